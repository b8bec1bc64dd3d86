package store

import (
	"context"
	"log/slog"
	"time"
)

// SQLite's WAL grows with every commit until a checkpoint copies it into
// the database file (and fsyncs that file). By default SQLite runs the
// checkpoint inside the commit that takes the WAL past 1,000 pages: with
// a webhook writing a few dozen pages, one webhook in every few dozen paid
// for copying everyone's pages and fsyncing the database file, a step in
// the tail of the webhook acknowledgement (and of push to IMAP IDLE). The
// store turns that off and checkpoints here instead, on its own
// connection, at most once per checkpointDelay after a commit. A PASSIVE
// checkpoint waits for no reader or writer; durability does not depend on
// it (synchronous=FULL fsyncs the WAL at every commit).

// checkpointDelay bounds how often the background checkpoint runs; the
// WAL holds at most about this long's worth of commits (at 100 webhooks/s,
// ~2,000 pages). A variable so tests can hold the checkpoint back.
var checkpointDelay = 250 * time.Millisecond

func (s *sqlStore) startCheckpointer(log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	s.checkpoint = make(chan struct{}, 1)
	s.stopCheckpoint = make(chan struct{})
	s.checkpointDone = make(chan struct{})
	delay := checkpointDelay
	go func() {
		defer close(s.checkpointDone)
		for {
			select {
			case <-s.stopCheckpoint:
				return
			case <-s.checkpoint:
			}
			// Let commits gather: one checkpoint (and one fsync of the
			// database file) per interval, whatever the commit rate.
			select {
			case <-s.stopCheckpoint:
				return
			case <-time.After(delay):
			}
			if _, err := s.db.ExecContext(context.Background(), `PRAGMA wal_checkpoint(PASSIVE)`); err != nil {
				log.Warn("store: background WAL checkpoint failed; retrying after the next commit", "err", err)
			}
		}
	}()
}

// pokeCheckpointer tells the checkpointer that the WAL grew; it never
// blocks the committing writer.
func (s *sqlStore) pokeCheckpointer() {
	if s.checkpoint == nil {
		return
	}
	select {
	case s.checkpoint <- struct{}{}:
	default: // one is already pending
	}
}

// stopCheckpointer ends the checkpointer; closing the last connection
// checkpoints whatever is left.
func (s *sqlStore) stopCheckpointer() {
	if s.stopCheckpoint == nil {
		return
	}
	close(s.stopCheckpoint)
	<-s.checkpointDone
	s.stopCheckpoint = nil // a second Close must not close it again
}
