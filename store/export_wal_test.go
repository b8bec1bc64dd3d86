package store

import "context"

// SetWALResetFrames sets the WAL length past which the checkpointer
// truncates it, for stores opened afterwards; the returned function
// restores it.
func SetWALResetFrames(n int) (restore func()) {
	old := walResetFrames
	walResetFrames = n
	return func() { walResetFrames = old }
}

// WALFrames returns the frames in an SQLite store's WAL (a PASSIVE
// checkpoint's count, so it also copies what it can).
func WALFrames(s Store) (int, error) {
	st := s.(*sqlStore)
	r, err := st.walCheckpoint(context.Background(), st.db, "PASSIVE")
	return r.log, err
}
