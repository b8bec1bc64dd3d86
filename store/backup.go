package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/duebridge/duebridge/internal/clock"
)

// Backup and restore of the SQLite store.
//
// Backup runs while the server serves: VACUUM INTO reads the database in
// one read transaction (a WAL snapshot), so the copy holds exactly the
// commits before it began, whatever commits during it, and writers are not
// blocked. Every webhook acknowledged before the backup started is in it:
// a 200 is sent only after its commit.
//
// A restored database is an older state under the same names. Phones hold
// CalDAV sync tokens and IMAP UIDs from the newer state, and the revision
// counter (Seq) and each mailbox's UIDNEXT go back, so revisions and UIDs
// would be handed out a second time with other meanings. NewIdentity makes
// the restored database a different one for every client: a new CalDAV
// sync epoch (old tokens are refused with valid-sync-token and phones sync
// in full) and a new UIDVALIDITY for every mailbox (RFC 9051 §2.3.1.1: UIDs
// may be reused only under a new UIDVALIDITY, and clients then drop their
// cache and fetch the mailbox again).
//
// PostgreSQL is backed up with its own tools (pg_dump / pg_restore, or
// continuous archiving); after restoring such a dump, NewIdentity is run
// on it the same way (`duebridge restore --config ... --identity-only`).

// ErrBackupPostgres is returned by Backup for a PostgreSQL store.
var ErrBackupPostgres = errors.New("duebridge backup copies SQLite stores only; back up PostgreSQL with pg_dump " +
	"(pg_dump --format=custom --file=duebridge.dump URL), restore it with pg_restore into an empty database, " +
	"then run `duebridge restore --config FILE --identity-only` before starting duebridge on it")

// calendarEpochKey is the kv key of the CalDAV sync epoch (calendar/token.go
// creates a fresh random one when it is missing). Deleting it is how a
// restore gives CalDAV a new epoch; TestBackupRestore in cmd/duebridge
// checks end to end that phones' old tokens are then refused.
const calendarEpochKey = "caldav_sync_epoch"

// sqlitePath is the database file of a SQLite source (a data directory or
// a path ending in .db), as Open uses it.
func sqlitePath(source string) string {
	if strings.HasSuffix(source, ".db") {
		return source
	}
	return filepath.Join(source, "duebridge.db")
}

// Backup writes a consistent copy of the store at source to out, which must
// not exist. It opens the database itself (without migrating it), so it can
// run from another process next to a serving one.
func Backup(ctx context.Context, dialect, source, out string) error {
	if dialect == Postgres {
		return ErrBackupPostgres
	}
	if dialect != SQLite {
		return fmt.Errorf("backup: unknown store %q", dialect)
	}
	path := sqlitePath(source)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("backup: no database at %s: %w", path, err)
	}
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("backup: %s exists; choose a new file name", out)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return fmt.Errorf("backup: open %s: %w", path, err)
	}
	defer db.Close()
	if err := checkDuebridgeDB(ctx, db); err != nil {
		return fmt.Errorf("backup: %s: %w", path, err)
	}
	// Into a temporary name in the target directory, renamed when complete
	// and fsynced: a crash never leaves a truncated file under the name.
	tmp := out + ".partial"
	os.Remove(tmp)
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("backup: copy %s: %w", path, err)
	}
	// The copy holds what the database holds: readable by its owner only.
	if err := os.Chmod(tmp, 0o600); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("backup: %w", err)
	}
	if err := syncFile(tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("backup: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("backup: %w", err)
	}
	return syncDir(filepath.Dir(out))
}

// checkDuebridgeDB refuses a file that is not a duebridge database, or one
// from a newer binary.
func checkDuebridgeDB(ctx context.Context, db *sql.DB) error {
	var v int
	if err := db.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); err != nil {
		return fmt.Errorf("not a duebridge database (no schema version): %w", err)
	}
	if v > SchemaVersion() {
		return fmt.Errorf("schema version %d is newer than this binary's %d: use a newer duebridge", v, SchemaVersion())
	}
	return nil
}

// Restore copies the backup file into dataDir, which must not hold a
// database (a live or stopped server's data is never overwritten: move it
// aside first), migrates it to this binary's schema and gives it a new
// identity (NewIdentity).
func Restore(ctx context.Context, backup, dataDir string, now time.Time) error {
	dst := sqlitePath(dataDir)
	for _, p := range []string{dst, dst + "-wal", dst + "-shm"} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("restore: %s exists: duebridge never overwrites a data directory; restore into a new one "+
				"(or stop the server and move the old one aside)", p)
		}
	}
	src, err := sql.Open("sqlite", "file:"+backup+"?mode=ro")
	if err != nil {
		return fmt.Errorf("restore: open %s: %w", backup, err)
	}
	err = checkDuebridgeDB(ctx, src)
	if err == nil {
		var res string
		if err = src.QueryRowContext(ctx, `PRAGMA quick_check`).Scan(&res); err == nil && res != "ok" {
			err = fmt.Errorf("integrity check: %s", res)
		}
	}
	src.Close()
	if err != nil {
		return fmt.Errorf("restore: %s: %w", backup, err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("restore: create data dir: %w", err)
	}
	tmp := dst + ".restoring"
	if err := copyFile(backup, tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("restore: %w", err)
	}
	// Re-identify before the file gets its real name: a server started on
	// the directory never sees the old identity.
	return restoreFinish(ctx, tmp, dst, now)
}

// restoreFinish opens the copied file under a .db name (Open wants one),
// migrates and re-identifies it, checkpoints the WAL into the main file and
// renames it into place.
func restoreFinish(ctx context.Context, tmp, dst string, now time.Time) error {
	work := tmp + ".db"
	if err := os.Rename(tmp, work); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	cleanup := func() {
		for _, p := range []string{work, work + "-wal", work + "-shm"} {
			os.Remove(p)
		}
	}
	st, err := Open(ctx, SQLite, work, Options{Clock: clock.System(func() time.Time { return now })})
	if err != nil {
		cleanup()
		return fmt.Errorf("restore: open copy: %w", err)
	}
	err = NewIdentity(ctx, st, now)
	if err == nil {
		// Fold the WAL into the file so the rename moves everything.
		_, err = st.(*sqlStore).db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
	}
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		cleanup()
		return fmt.Errorf("restore: %w", err)
	}
	if _, err := os.Stat(work + "-wal"); err == nil {
		if fi, _ := os.Stat(work + "-wal"); fi.Size() > 0 {
			cleanup()
			return errors.New("restore: the copy's WAL was not folded into it")
		}
	}
	os.Remove(work + "-wal")
	os.Remove(work + "-shm")
	if err := syncFile(work); err != nil {
		cleanup()
		return fmt.Errorf("restore: %w", err)
	}
	if err := os.Rename(work, dst); err != nil {
		cleanup()
		return fmt.Errorf("restore: %w", err)
	}
	return syncDir(filepath.Dir(dst))
}

// NewIdentity makes a restored database a different one for every client:
// a new CalDAV sync epoch and a new UIDVALIDITY for every mailbox, above
// the old one and at least the current Unix time (as new mailboxes get),
// so two restores of one backup at different times differ too.
func NewIdentity(ctx context.Context, st Store, now time.Time) error {
	return st.Update(ctx, func(t Tx) error {
		tx := t.(*sqlTx)
		if _, err := tx.exec(`DELETE FROM kv WHERE key = ?`, calendarEpochKey); err != nil {
			return fmt.Errorf("new sync epoch: %w", err)
		}
		rows, err := tx.query(`SELECT username, name, uid_validity FROM mailboxes`)
		if err != nil {
			return fmt.Errorf("new uidvalidity: %w", err)
		}
		type mbox struct {
			user, name string
			validity   int64
		}
		var all []mbox
		for rows.Next() {
			var m mbox
			if err := rows.Scan(&m.user, &m.name, &m.validity); err != nil {
				rows.Close()
				return err
			}
			all = append(all, m)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, m := range all {
			if _, err := tx.exec(`UPDATE mailboxes SET uid_validity = ? WHERE username = ? AND name = ?`,
				int64(nextValidity(uint32(m.validity), now)), m.user, m.name); err != nil {
				return fmt.Errorf("new uidvalidity %s/%s: %w", m.user, m.name, err)
			}
		}
		return nil
	})
}

// nextValidity is a UIDVALIDITY different from old: the clock's seconds if
// they are past it, else old+1; never 0 (RFC 9051: nz-number).
func nextValidity(old uint32, now time.Time) uint32 {
	v := uint32(now.Unix())
	if v <= old {
		v = old + 1
	}
	if v == 0 {
		v = 1
	}
	return v
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", from, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	d.Sync() // not every file system supports it; the data itself is synced
	return nil
}
