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

// RerenderIfStale is the start's first re-render check alone
// (rerenderIfStale, under the re-render lock).
func (s *Service) RerenderIfStale(ctx context.Context) (bool, error) {
	s.rerenderMu.Lock()
	defer s.rerenderMu.Unlock()
	return s.rerenderIfStale(ctx)
}

// RerenderChangedUsers is the start's second re-render check alone
// (rerenderStale against no old config, under the re-render lock).
func (s *Service) RerenderChangedUsers(ctx context.Context) error {
	s.rerenderMu.Lock()
	defer s.rerenderMu.Unlock()
	return s.rerenderStale(ctx, nil, s.Config())
}
