package store

import "context"

// WALFrames returns the frames in an SQLite store's WAL (a PASSIVE
// checkpoint's count, so it also copies what it can).
func WALFrames(s Store) (int, error) {
	st := s.(*sqlStore)
	r, err := walCheckpoint(context.Background(), st.db, "PASSIVE")
	return r.log, err
}
