package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duebridge/duebridge/internal/clock"
	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL driver "pgx"
	"modernc.org/sqlite"               // pure-Go SQLite driver "sqlite"
)

// Dialect names accepted by Open.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

type sqlStore struct {
	db      *sql.DB
	dialect string
	opts    Options
	// commitMu keeps OnCommit calls in commit order: SQLite serialises writers
	// (BEGIN IMMEDIATE); on PostgreSQL the revision row lock, taken at the
	// start of every write transaction, does; this lock makes the hand-off of
	// events follow the same order.
	commitMu sync.Mutex
	// writeTurn (SQLite only, one slot) queues this process's writers
	// before BEGIN IMMEDIATE. Without it a writer that finds the lock taken
	// sleeps in SQLite's busy handler (1, 2, 5, 10 ... 100 ms, whatever
	// the holder does), holding a pool connection: behind the scheduler's
	// short transaction after each commit, a webhook waited 1 ms or more,
	// and under load its waits grew to 100 ms steps. A channel hands the
	// turn to the next writer the moment the last one commits. Other
	// processes on the same file still meet busy_timeout.
	writeTurn chan struct{}
	// SQLite only: commits poke the background checkpointer (checkpoint.go)
	// instead of checkpointing on the committing writer's time.
	checkpoint     chan struct{}
	stopCheckpoint chan struct{}
	checkpointDone chan struct{}
	// walFrames and walRestarts are reported by WALStats.
	walFrames, walRestarts atomic.Int64

	// SQLite only: statements prepared once per pool connection (stmt).
	prepared prepared

	// PostgreSQL only: cross-process events (notify.go).
	process      string // this process's id in NOTIFY payloads
	channel      string
	listening    atomic.Bool
	stopListen   context.CancelFunc
	listenerDone chan struct{}
}

// Open opens (and migrates) a store. For SQLite, source is the data
// directory (the file is duebridge.db inside it) or a path ending in .db;
// for PostgreSQL it is a connection URL.
func Open(ctx context.Context, dialect, source string, o Options) (Store, error) {
	if o.Clock == nil {
		o.Clock = clock.System(nil)
	}
	s := &sqlStore{dialect: dialect, opts: o}
	if dialect == SQLite {
		s.writeTurn = make(chan struct{}, 1)
	}
	var err error
	var walBytes int64 // SQLite: the WAL a process that did not close the store left
	switch dialect {
	case SQLite:
		path := source
		if !strings.HasSuffix(path, ".db") {
			if err := os.MkdirAll(source, 0o700); err != nil {
				return nil, fmt.Errorf("create data dir: %w", err)
			}
			path = filepath.Join(source, "duebridge.db")
		}
		// WAL + synchronous=FULL: a commit has been fsynced when it returns,
		// which is what "durable before acknowledged" needs. _txlock=immediate
		// takes the write lock at BEGIN so writers queue on busy_timeout
		// instead of failing with SQLITE_BUSY on upgrade.
		// wal_autocheckpoint(0): the checkpoint (copying the WAL into the
		// database file and fsyncing it) runs in the background
		// (checkpoint.go), not inside whichever commit crosses 1,000 pages.
		dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)" +
			"&_pragma=busy_timeout(" + busyTimeoutMillis + ")&_pragma=foreign_keys(1)&_pragma=wal_autocheckpoint(0)&_txlock=immediate"
		walBytes = walSize(path) // before the first connection recovers it
		s.db, err = sql.Open(sqliteDriver, dsn)
		if err != nil {
			return nil, fmt.Errorf("open sqlite %s: %w", path, err)
		}
		// One writer at a time is SQLite's model; readers use WAL snapshots.
		// Connections stay open (database/sql keeps 2 idle by default) so
		// the statements prepared on them stay prepared.
		s.db.SetMaxOpenConns(8)
		s.db.SetMaxIdleConns(8)
		s.prepared.db = s.db
	case Postgres:
		s.db, err = sql.Open("pgx", source)
		if err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		s.db.SetMaxOpenConns(16)
	default:
		return nil, fmt.Errorf("unknown store %q", dialect)
	}
	if err := s.connect(ctx); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("connect to %s store: %w", dialect, err)
	}
	// Migration, the checkpointer and the listener all log: the default
	// is taken once, here.
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := migrate(ctx, s.db, dialect, log); err != nil {
		s.db.Close()
		return nil, err
	}
	if dialect == SQLite {
		s.checkpointAtOpen(ctx, walBytes, log)
		s.startCheckpointer(log)
	}
	if dialect == Postgres {
		if s.channel, err = channelFor(ctx, s.db); err != nil {
			s.db.Close()
			return nil, err
		}
		s.process = newProcessID()
		if o.OnCommit != nil {
			lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
			s.stopListen, s.listenerDone = cancel, make(chan struct{})
			go func() {
				defer close(s.listenerDone)
				s.listen(lctx, source, log)
			}()
		}
	}
	return s, nil
}

// connect makes the first connection. On SQLite, a new connection's
// journal_mode(WAL) pragma can fail with SQLITE_BUSY at once, without
// waiting out busy_timeout, while another connection or process converts a
// new database to WAL (seen with several Opens at once, ~1 in 100); the
// connection is discarded, so trying again is safe.
func (s *sqlStore) connect(ctx context.Context) error {
	delay := 5 * time.Millisecond
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.db.PingContext(ctx)
		var se *sqlite.Error
		if err == nil || s.dialect != SQLite || !errors.As(err, &se) || se.Code()&0xff != sqliteBusy || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

// busyTimeoutMillis is how long an SQLite connection waits for a lock held
// by another process (this process's writers queue on writeTurn).
const busyTimeoutMillis = "10000"

// sqliteBusy is SQLITE_BUSY, the primary result code (extended codes keep it
// in the low byte).
const sqliteBusy = 5

func (s *sqlStore) Close() error {
	if s.stopListen != nil {
		s.stopListen()
		<-s.listenerDone
	}
	s.stopCheckpointer()
	s.prepared.close()
	return s.db.Close()
}

func (s *sqlStore) Ping(ctx context.Context) error {
	var one int
	return s.db.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
}

func (s *sqlStore) Update(ctx context.Context, fn func(Tx) error) error {
	return s.run(ctx, false, fn)
}

func (s *sqlStore) View(ctx context.Context, fn func(Tx) error) error {
	return s.run(ctx, true, fn)
}

// Read runs fn on the pool, outside an explicit transaction: a read of
// one statement is its own consistent snapshot on both databases, so it
// needs no BEGIN and ROLLBACK, and database/sql none of its Tx machinery
// (on a home poll these cost more than the query itself). fn may run one
// SELECT; a second statement fails with ErrOneStatement (use View), a
// write as in a View.
//
// On SQLite, ctx is checked before the statement but neither interrupts
// it nor ends its wait for a pool connection: with a cancellable context,
// database/sql and the driver each start a goroutine per statement to
// watch it, ~30 % of a ten-row read's CPU (a WAL reader never waits for a
// writer, so there is little to cut short). Reads are for short queries.
func (s *sqlStore) Read(ctx context.Context, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if s.dialect == SQLite {
		ctx = context.WithoutCancel(ctx)
	}
	tx := sqlTx{ctx: ctx, pool: s.db, dialect: s.dialect, now: s.opts.Clock.Now().UTC(), readOnly: true, prepared: &s.prepared}
	return fn(&tx)
}

func (s *sqlStore) run(ctx context.Context, readOnly bool, fn func(Tx) error) (err error) {
	if !readOnly && s.writeTurn != nil {
		wait := trace.StartRegion(ctx, "store.writer-turn")
		select {
		case s.writeTurn <- struct{}{}:
		case <-ctx.Done():
			wait.End()
			return fmt.Errorf("begin transaction: wait for the writer's turn: %w", ctx.Err())
		}
		wait.End()
		// Held until the commit's events are handed on, like SQLite's own
		// write lock (and commitMu) would be.
		defer func() { <-s.writeTurn }()
	}
	var sqlTxn *sql.Tx
	switch {
	case readOnly && s.dialect == SQLite:
		// A deferred read transaction: _txlock=immediate would take the write lock.
		sqlTxn, err = s.beginDeferred(ctx)
	case readOnly:
		// PostgreSQL's default READ COMMITTED takes a new snapshot per
		// statement; a View promises one snapshot. A read-only REPEATABLE
		// READ transaction never fails with a serialisation error.
		sqlTxn, err = s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead})
	default:
		sqlTxn, err = s.db.BeginTx(ctx, nil)
	}
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if !readOnly && s.dialect == Postgres {
		// Serialise writers as SQLite's BEGIN IMMEDIATE does: without this,
		// two READ COMMITTED transactions could both read a row, then both
		// write it, and the later commit would undo the earlier (a task
		// moved back by an older webhook, a lost flag). The revision row's
		// lock is held until commit; statements after it see every commit
		// before it. It also makes commit order equal revision order.
		var seq int64
		if err := sqlTxn.QueryRowContext(ctx, `SELECT seq FROM revision WHERE id = 1 FOR UPDATE`).Scan(&seq); err != nil {
			sqlTxn.Rollback()
			return fmt.Errorf("begin transaction: lock revision: %w", err)
		}
	}
	tx := &sqlTx{ctx: ctx, tx: sqlTxn, dialect: s.dialect, now: s.opts.Clock.Now().UTC(), readOnly: readOnly, prepared: &s.prepared}
	defer tx.closeStmts()
	defer func() {
		if p := recover(); p != nil {
			sqlTxn.Rollback()
			panic(p)
		}
	}()
	if err := fn(tx); err != nil {
		sqlTxn.Rollback()
		return err
	}
	if readOnly {
		return sqlTxn.Rollback()
	}
	if err := tx.flush(); err != nil {
		sqlTxn.Rollback()
		return err
	}
	if s.dialect == Postgres && len(tx.events) > 0 {
		if err := s.publish(ctx, sqlTxn, tx.seq, tx.events); err != nil {
			sqlTxn.Rollback()
			return err
		}
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	commit := trace.StartRegion(ctx, "store.commit") // the WAL write and its fsync
	err = sqlTxn.Commit()
	commit.End()
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	s.pokeCheckpointer()
	if s.opts.OnCommit != nil && len(tx.events) > 0 {
		for i := range tx.events {
			if tx.events[i].Seq == 0 { // emitted before the revision was allocated
				tx.events[i].Seq = tx.seq
			}
		}
		s.opts.OnCommit(tx.events)
	}
	return nil
}

// beginDeferred starts a read transaction on SQLite without the immediate
// write lock, on a dedicated connection.
func (s *sqlStore) beginDeferred(ctx context.Context) (*sql.Tx, error) {
	// database/sql cannot choose BEGIN DEFERRED per transaction with the
	// _txlock DSN parameter, but a read-only TxOptions makes modernc issue
	// a plain BEGIN (deferred).
	return s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
}

type sqlTx struct {
	ctx context.Context
	tx  *sql.Tx // nil in a Read, which runs its statement on pool
	// pool and ran: a Read's database and whether its statement ran.
	pool     *sql.DB
	ran      bool
	dialect  string
	now      time.Time
	readOnly bool
	seq      int64
	events   []Event
	stmts    map[string]*sql.Stmt
	prepared *prepared
	// touched collections get their ctag advanced once, at flush, instead
	// of once per object (a batch of 1,000 tasks touches one row 2,000 times).
	touched map[[2]string]bool
}

// flush writes what the transaction deferred; it runs just before commit.
func (tx *sqlTx) flush() error {
	if len(tx.touched) == 0 {
		return nil
	}
	keys := slices.SortedFunc(maps.Keys(tx.touched), func(a, b [2]string) int {
		return cmp.Or(strings.Compare(a[0], b[0]), strings.Compare(a[1], b[1]))
	})
	// One UPDATE per user's names (a new task touches its Reminders list
	// and its deadlines calendar: one statement, not two), padded to 2 or
	// 50 names by repeating the last so there are two statement shapes.
	for len(keys) > 0 {
		user := keys[0][0]
		n := 1
		for n < len(keys) && n < ctagChunk && keys[n][0] == user {
			n++
		}
		size := 2
		if n > 2 {
			size = ctagChunk
		}
		args := make([]any, 0, 3+size)
		args = append(args, tx.seq, user, tx.seq)
		for i := range size {
			args = append(args, keys[min(i, n-1)][1])
		}
		if _, err := tx.exec(`UPDATE collections SET seq = ? WHERE username = ? AND seq < ? AND name IN (`+inList(size)+`)`, args...); err != nil {
			return fmt.Errorf("advance collections of %s: %w", user, err)
		}
		for _, k := range keys[:n] {
			tx.Emit(Event{Seq: tx.seq, Kind: EventCalendar, User: k[0], Name: k[1]})
		}
		keys = keys[n:]
	}
	return nil
}

// ctagChunk bounds the names of one flush UPDATE.
const ctagChunk = 50

func (tx *sqlTx) Now() time.Time { return tx.now }

func (tx *sqlTx) Emit(e Event) {
	if e.Seq == 0 {
		e.Seq = tx.seq
	}
	tx.events = append(tx.events, e)
}

var errReadOnly = errors.New("store: write in a read-only transaction")

func (tx *sqlTx) Savepoint(fn func() error) error {
	if tx.readOnly {
		return errReadOnly
	}
	if tx.seq == 0 {
		return errors.New("store: savepoint before the revision was allocated")
	}
	if _, err := tx.exec(`SAVEPOINT duebridge_sp`); err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	events := len(tx.events)
	touched := make(map[[2]string]bool, len(tx.touched))
	for k := range tx.touched {
		touched[k] = true
	}
	if err := fn(); err != nil {
		if _, rerr := tx.exec(`ROLLBACK TO SAVEPOINT duebridge_sp`); rerr != nil {
			return fmt.Errorf("%w (and rolling back to the savepoint failed: %v)", err, rerr)
		}
		if _, rerr := tx.exec(`RELEASE SAVEPOINT duebridge_sp`); rerr != nil {
			return fmt.Errorf("%w (and releasing the savepoint failed: %v)", err, rerr)
		}
		tx.events, tx.touched = tx.events[:events], touched
		return err
	}
	if _, err := tx.exec(`RELEASE SAVEPOINT duebridge_sp`); err != nil {
		return fmt.Errorf("release savepoint: %w", err)
	}
	return nil
}

func (tx *sqlTx) Seq() (int64, error) {
	if tx.seq != 0 {
		return tx.seq, nil
	}
	if tx.readOnly {
		return 0, errReadOnly
	}
	// One row, updated by every transaction that writes: on PostgreSQL its
	// lock, taken when the transaction began, orders writers (see run).
	if err := tx.queryRow(`UPDATE revision SET seq = seq + 1 WHERE id = 1 RETURNING seq`).Scan(&tx.seq); err != nil {
		return 0, fmt.Errorf("allocate revision: %w", err)
	}
	return tx.seq, nil
}

// rebind turns ? placeholders into $1, $2... for PostgreSQL.
func (tx *sqlTx) rebind(q string) string {
	if tx.dialect != Postgres {
		return q
	}
	return rebindDollar(q)
}

func rebindDollar(q string) string {
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// stmt returns the statement for q on the transaction's connection. On
// SQLite, parsing SQL dominated short transactions (a home poll's two
// reads spent as long preparing as running) and batch ingest (each of
// 1,000 tasks runs the same dozen statements): a statement is prepared once
// per pool connection and reused by every later transaction on it. On
// PostgreSQL it returns nil: pgx already caches prepared statements per
// connection, and an explicit Prepare and Close per transaction cost two
// more round trips each (a one-query View took 2.5 times as long).
func (tx *sqlTx) stmt(q string) (*sql.Stmt, error) {
	if tx.dialect == Postgres {
		return nil, nil
	}
	if st, ok := tx.stmts[q]; ok {
		return st, nil
	}
	var st *sql.Stmt
	if shared := tx.prepared.get(q); shared != nil {
		// Reuses the driver statement already prepared on this
		// connection, or prepares it there once and keeps it.
		st = tx.tx.StmtContext(tx.ctx, shared)
	} else {
		var err error
		if st, err = tx.tx.PrepareContext(tx.ctx, tx.rebind(q)); err != nil {
			return nil, err
		}
	}
	if tx.stmts == nil {
		tx.stmts = map[string]*sql.Stmt{}
	}
	tx.stmts[q] = st
	return st, nil
}

// sqliteDriver is the database/sql driver the SQLite store opens; tests
// wrap it to count statements prepared.
var sqliteDriver = "sqlite"

// maxPrepared bounds the statements kept prepared per connection: about a
// hundred fixed queries and the IN (?, ...) lists of up to 50 names.
const maxPrepared = 512

// prepared is the SQLite store's set of statements kept prepared on the
// pool's connections (database/sql prepares a *sql.Stmt on each connection
// a transaction uses it on, once).
type prepared struct {
	db      *sql.DB
	mu      sync.Mutex
	stmts   map[string]*sql.Stmt
	pending map[string]bool
	wg      sync.WaitGroup
	closed  bool
}

// get returns the shared statement for q, or nil the first time q is seen;
// it is then prepared in the background: preparing it on the database
// inside a transaction would wait for a second pool connection while
// holding one, and with every connection held that never comes.
func (p *prepared) get(q string) *sql.Stmt {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := p.stmts[q]; st != nil {
		return st
	}
	if p.db == nil || p.closed || p.pending[q] || len(p.stmts)+len(p.pending) >= maxPrepared {
		return nil
	}
	if p.pending == nil {
		p.pending = map[string]bool{}
	}
	p.pending[q] = true
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		st, err := p.db.Prepare(q)
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(p.pending, q)
		if err != nil || p.closed {
			if st != nil {
				st.Close()
			}
			return
		}
		if p.stmts == nil {
			p.stmts = map[string]*sql.Stmt{}
		}
		p.stmts[q] = st
	}()
	return nil
}

// close waits for statements being prepared and closes them all; it runs
// before the database is closed.
func (p *prepared) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	for q, st := range p.stmts {
		st.Close()
		delete(p.stmts, q)
	}
}

func (tx *sqlTx) closeStmts() {
	for _, st := range tx.stmts {
		st.Close()
	}
}

func (tx *sqlTx) exec(q string, args ...any) (sql.Result, error) {
	if tx.readOnly {
		return nil, errReadOnly
	}
	st, err := tx.stmt(q)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return tx.tx.ExecContext(tx.ctx, tx.rebind(q), args...)
	}
	return st.ExecContext(tx.ctx, args...)
}

// ErrOneStatement is a Read's answer to a second statement (or to a
// statement that is not a SELECT): only one statement is its own snapshot.
var ErrOneStatement = errors.New("store: a Read runs one SELECT; use View for more")

// readStmt is a Read's one statement: the statement kept prepared on the
// pool's connections, or nil to send q as it is.
func (tx *sqlTx) readStmt(q string) (*sql.Stmt, error) {
	if tx.ran || !isSelect(q) {
		return nil, ErrOneStatement
	}
	tx.ran = true
	return tx.prepared.get(q), nil
}

// isSelect reports whether q is a SELECT (a Read runs nothing else: outside
// a transaction nothing would roll a write back).
func isSelect(q string) bool {
	q = strings.TrimSpace(q)
	return len(q) > 6 && strings.EqualFold(q[:6], "SELECT") && strings.ContainsRune(" \t\n", rune(q[6]))
}

func (tx *sqlTx) query(q string, args ...any) (*sql.Rows, error) {
	if tx.tx == nil {
		st, err := tx.readStmt(q)
		if err != nil {
			return nil, err
		}
		if st == nil {
			return tx.pool.QueryContext(tx.ctx, tx.rebind(q), args...)
		}
		return st.QueryContext(tx.ctx, args...)
	}
	st, err := tx.stmt(q)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return tx.tx.QueryContext(tx.ctx, tx.rebind(q), args...)
	}
	return st.QueryContext(tx.ctx, args...)
}

// errRow is a row whose Scan reports err.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

func (tx *sqlTx) queryRow(q string, args ...any) scanner {
	if tx.tx == nil {
		st, err := tx.readStmt(q)
		if err != nil {
			return errRow{err}
		}
		if st == nil {
			return tx.pool.QueryRowContext(tx.ctx, tx.rebind(q), args...)
		}
		return st.QueryRowContext(tx.ctx, args...)
	}
	st, err := tx.stmt(q)
	if err != nil || st == nil {
		// A *sql.Row cannot be built with an error outside database/sql;
		// the unprepared path reports the same error on Scan.
		return tx.tx.QueryRowContext(tx.ctx, tx.rebind(q), args...)
	}
	return st.QueryRowContext(tx.ctx, args...)
}
