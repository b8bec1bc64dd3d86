package bridge

import (
	"context"
	"time"
)

// PollRevocations makes one pass of the revocation poll runDevices makes
// every few seconds: revocations by other processes sharing the store are
// evicted and end the users' sessions. The first pass only marks where the
// revocation log ends, as runDevices does when it starts.
func PollRevocations(ctx context.Context, s *Service) error { return s.publishRevocations(ctx) }

// SetDeviceRevocationPoll sets how often s's device loop polls the
// revocation log (tests lengthen it to see only announced revocations).
// Call it before Run.
func SetDeviceRevocationPoll(s *Service, d time.Duration) { s.devices.poll = d }
