package bridge

import "time"

// SetDeviceRevocationPoll sets how often s's device loop polls the
// revocation log (tests lengthen it to see only announced revocations).
// Call it before Run.
func SetDeviceRevocationPoll(s *Service, d time.Duration) { s.devices.poll = d }
