package store

import "time"

// SetCheckpointDelay sets the background checkpoint's delay for stores
// opened afterwards; the returned function restores it.
func SetCheckpointDelay(d time.Duration) (restore func()) {
	old := checkpointDelay
	checkpointDelay = d
	return func() { checkpointDelay = old }
}
