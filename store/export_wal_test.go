package store

// SetWALResetFrames sets the WAL length past which the checkpointer
// truncates it, for stores opened afterwards; the returned function
// restores it.
func SetWALResetFrames(n int) (restore func()) {
	old := walResetFrames
	walResetFrames = n
	return func() { walResetFrames = old }
}
