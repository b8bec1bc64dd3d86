package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"log/slog"
	"os"
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
//
// A checkpoint copies the WAL but does not shorten it: the WAL starts
// over only when a writer begins after a checkpoint that copied all of
// it. While writers follow each other without a pause (a bulk import, a
// webhook storm) each began before the last checkpoint caught up, and the
// WAL grew without bound: 300-600 MB for a 150 MB database after 20 s of
// such writes with readers polling. That costs disk, and after a crash
// more: SQLite's recovery rebuilds the WAL's index from every frame and
// marks none of them as copied, so the first checkpoint after a restart
// copied the whole WAL into the database again, while the phones polled.
// Two things bound it:
//   - once the WAL holds more than Options.WALRestartBytes, the checkpointer holds
//     the writers' turn for one RESTART checkpoint (it copies what they
//     added since the PASSIVE one), so the next commit writes the WAL from
//     its start; writers wait about one commit's time, once per
//     WALRestartBytes of WAL, which only writers that never pause reach;
//   - at open, whatever WAL a killed process left is copied before the
//     store is handed out (checkpointAtOpen), so a restart pays for it
//     before serving, not during the first polls.

// checkpointDelay bounds how often the background checkpoint runs; the
// WAL holds at most about this long's worth of commits (at 100 webhooks/s,
// ~2,000 pages). A variable so tests can hold the checkpoint back.
var checkpointDelay = 250 * time.Millisecond

// defaultWALRestartBytes is the WAL length past which the checkpointer
// starts it over unless Options say otherwise: some 60 ms of recovery and
// 50 ms of copying at the open after a crash.
const defaultWALRestartBytes = 64 << 20

// walFrameBytes is one WAL frame's page: SQLite's default page size, which
// the store never changes (the frame's 24-byte header aside).
const walFrameBytes = 4096

func (s *sqlStore) startCheckpointer(log *slog.Logger) {
	s.checkpoint = make(chan struct{}, 1)
	s.stopCheckpoint = make(chan struct{})
	s.checkpointDone = make(chan struct{})
	delay, resetAt := checkpointDelay, int64(defaultWALRestartBytes)
	if s.opts.WALRestartBytes > 0 {
		resetAt = s.opts.WALRestartBytes
	}
	ctx := context.Background()
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
			r, err := walCheckpoint(ctx, s.db, "PASSIVE")
			if err != nil {
				log.Warn("store: background WAL checkpoint failed; retrying after the next commit", "err", err)
				continue
			}
			s.walFrames.Store(int64(r.log))
			if r.busy {
				// Another connection (or process) is checkpointing: try
				// again after the delay, as a commit may not come soon.
				s.pokeCheckpointer()
				continue
			}
			if int64(r.log)*walFrameBytes <= resetAt {
				continue
			}
			// The PASSIVE pass copied nearly all of it, writers going on;
			// with the writers held, what they added meanwhile is copied
			// and the WAL starts over. Writers wait that long, about one
			// commit's time, once per resetAt of WAL.
			select {
			case s.writeTurn <- struct{}{}:
			case <-s.stopCheckpoint:
				return
			}
			start := time.Now()
			r, err = s.checkpointNoWait(ctx, "RESTART")
			held := time.Since(start)
			<-s.writeTurn
			switch {
			case err != nil:
				log.Warn("store: restarting the WAL failed; retrying after the next commit", "err", err)
			case r.busy:
				// A reader still reads old frames (or another process
				// writes): try again after the delay.
				log.Debug("store: WAL not restarted: a reader still reads it; retrying", "frames", r.log, "writers_held", held)
				s.pokeCheckpointer()
			default:
				s.walRestarts.Add(1)
				log.Debug("store: WAL restarted", "frames", r.log, "writers_held", held)
			}
		}
	}()
}

// WALStats reports the write-ahead log's length at the last checkpoint and
// how often it was started over (zero on PostgreSQL).
func (s *sqlStore) WALStats() WALStats {
	return WALStats{Bytes: s.walFrames.Load() * walFrameBytes, Restarts: s.walRestarts.Load()}
}

// checkpointResult is what PRAGMA wal_checkpoint returns: whether it could
// not finish (a reader or writer was in the way), the frames in the WAL
// and how many of them are in the database file.
type checkpointResult struct {
	busy        bool
	log, copied int
}

// walCheckpoint runs a checkpoint in mode (PASSIVE, RESTART) on q.
func walCheckpoint(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, mode string) (checkpointResult, error) {
	var r checkpointResult
	if err := q.QueryRowContext(ctx, `PRAGMA wal_checkpoint(`+mode+`)`).Scan(&r.busy, &r.log, &r.copied); err != nil {
		return r, fmt.Errorf("WAL checkpoint (%s): %w", mode, err)
	}
	return r, nil
}

// checkpointNoWait runs a checkpoint in mode (RESTART) on a connection
// that waits for nobody (busy_timeout 0): the mode otherwise waits in the
// busy handler for every reader of old frames to finish, holding SQLite's
// write lock meanwhile. If one is in the way it copies what it can, as
// PASSIVE does, and reports busy. The caller keeps this process's writers
// out. (TRUNCATE would also cut the file: ~45 ms for 80 MB, writers held.)
func (s *sqlStore) checkpointNoWait(ctx context.Context, mode string) (r checkpointResult, err error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return r, fmt.Errorf("WAL checkpoint (%s): %w", mode, err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `PRAGMA busy_timeout = 0`); err != nil {
		return r, fmt.Errorf("WAL checkpoint (%s): %w", mode, err)
	}
	r, err = walCheckpoint(ctx, conn, mode)
	if _, rerr := conn.ExecContext(ctx, `PRAGMA busy_timeout = `+busyTimeoutMillis); rerr != nil {
		// The pool must not keep a connection that fails at once on a lock.
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		return r, fmt.Errorf("WAL checkpoint (%s): restore busy_timeout: %w", mode, rerr)
	}
	return r, err
}

// checkpointAtOpen copies into the database file the WAL that a process
// which did not close the store (killed, crashed, or still running) left;
// walBytes is the WAL file's size before the store opened it. After a
// crash nobody else is connected, so it waits for no one and copies all
// of it, and the first commit then starts the WAL over. PASSIVE, not
// TRUNCATE: with another process running, TRUNCATE would hold that
// process's writers while it cut the file (~45 ms for 80 MB). A second
// crash before any commit leaves the same WAL, copied again at the next
// open. A failure is logged, not returned: the background checkpointer
// copies the WAL later, as it did before.
func (s *sqlStore) checkpointAtOpen(ctx context.Context, walBytes int64, log *slog.Logger) {
	if walBytes <= 0 {
		return // closed cleanly: SQLite checkpointed and removed it
	}
	start := time.Now()
	r, err := walCheckpoint(ctx, s.db, "PASSIVE")
	if err != nil {
		log.Warn("store: checkpointing the WAL found at open failed; the background checkpoint copies it while serving", "err", err)
		return
	}
	log.Info("store: checkpointed the WAL found at open (left by a process that was killed, crashed or still has the database open)",
		"frames", r.log, "copied", r.copied, "wal_bytes", walBytes, "took", time.Since(start).Round(time.Millisecond))
}

// walSize is the size of the SQLite database's WAL file, 0 if there is none.
func walSize(path string) int64 {
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		return 0
	}
	return fi.Size()
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
