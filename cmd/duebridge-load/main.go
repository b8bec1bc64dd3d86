// Command duebridge-load measures a duebridge server the way its clients
// use it: task systems pushing signed webhooks, iPhones polling CalDAV
// (home PROPFIND Depth 1 for the ctag, sync-collection on changed lists,
// calendar-multiget in batches of 50) and IMAP clients idling on INBOX.
//
// It either starts a server itself (--start: a config with N users and
// hashed passwords in a temp dir, `duebridge serve` as a child on loopback
// ports) or targets a running one (--target URL). Everything it sends goes to
// loopback only, is bounded in time and count, and it stops by itself.
//
// Scenarios:
//
//	load    (default) seed M tasks through the webhook, hold K IMAP
//	        connections in IDLE and C CalDAV pollers, then drive R webhook
//	        requests/s for D and report ack, webhook → IDLE EXISTS, webhook →
//	        visible in sync-collection, PROPFIND, sync-collection and multiget
//	        latencies, server RSS and goroutines.
//	phones  (--phones N) the capacity model: every phone polls its home
//	        (PROPFIND Depth 1) once per 15 minutes plus a sync REPORT (and
//	        multiget) per changed list, every request with Basic auth; time is
//	        compressed to a chosen request rate. With --floor go|haproxy
//	        the phones poll a server that answers a recorded home answer
//	        and does nothing else: the machine's floor (floor.go).
//	dav     closed-loop CalDAV throughput (PROPFIND Depth 1 of a home,
//	        multiget of S objects, incremental sync-collection) against any
//	        CalDAV server; --export-ics / --seed-ics carry the same objects
//	        from duebridge to Radicale or Xandikos by PUT.
//
// The IMAP part also runs against other servers (Dovecot) with
// --trigger append: an APPEND on another connection stands in for the
// webhook, and --pid gives the server's process for memory figures.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type options struct {
	Scenario string

	Start  bool
	Target string
	IMAP   string
	Bin    string
	Src    string
	Keep   bool
	Hash   string
	Pid    int

	Source     string
	Secret     string
	Users      int
	UserFormat string
	Password   string

	Projects    int
	Tasks       int
	SeedBatch   int
	SeedWorkers int

	Idle         int
	IdleParallel int
	SourceAddrs  []netip.Addr
	IdleBarrier  barrier
	DAV          int
	PollInterval time.Duration
	Rate         float64
	Batch        int
	Duration     time.Duration
	ProbeEvery   int
	Trigger      string
	MaxInflight  int

	Phones       int
	PhoneRate    float64
	PhoneChange  float64
	PhoneUsers   int
	PhoneCold    time.Duration
	SLO          time.Duration
	KeepAlive    bool
	PhoneMinimal bool
	ToolGOGC     int
	PhoneWorkers int
	TLS          bool
	TicketKeys   bool
	TLSResume    bool
	DevicePWs    bool
	ColdCompare  bool
	RestartFor   time.Duration
	Returning    int
	Floor        string
	HAProxy      string

	DAVOps       string
	Workers      int
	MultigetSize int
	SyncDelta    int
	Warmup       time.Duration
	ExportICS    string
	SeedICS      string
	DAVUser      string

	JSON       string
	Label      string
	Quiet      bool
	MaxTime    time.Duration
	CPUProfile string
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("duebridge-load", flag.ContinueOnError)
	fs.StringVar(&o.Scenario, "scenario", "load", "load | phones | dav")
	fs.BoolVar(&o.Start, "start", false, "start duebridge serve as a child (the default without --target and --imap)")
	fs.StringVar(&o.Target, "target", "", "base URL of a running server (loopback only), e.g. http://127.0.0.1:8080")
	fs.StringVar(&o.IMAP, "imap", "", "IMAP address of the target (host:port, loopback only)")
	fs.StringVar(&o.Bin, "bin", "", "duebridge binary for --start (default: go build ./cmd/duebridge)")
	fs.StringVar(&o.Src, "src", "", "duebridge module root to build from (default: found from the working directory)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the --start temp dir (config, data, serve.log)")
	fs.StringVar(&o.Hash, "hash", "argon2id", "password hashes for --start: argon2id (what duebridge hash-password writes) | bcrypt | bcrypt-min")
	fs.IntVar(&o.Pid, "pid", 0, "server process (and its children) to read memory from, with --target")

	fs.StringVar(&o.Source, "source", "load", "webhook source")
	fs.StringVar(&o.Secret, "secret", "", "webhook secret (with --target; --start makes one)")
	fs.IntVar(&o.Users, "users", 20, "users (N)")
	fs.StringVar(&o.UserFormat, "user-format", "load%05d", "user names, fmt with the user index")
	fs.StringVar(&o.Password, "password", "load-password", "every user's password")

	fs.IntVar(&o.Projects, "projects", 5, "projects; each is a Reminders list and a deadlines calendar per user")
	fs.IntVar(&o.Tasks, "tasks", 1000, "tasks created through the webhook before the measured phase (M)")
	fs.IntVar(&o.SeedBatch, "seed-batch", 500, "tasks per webhook request while seeding")
	fs.IntVar(&o.SeedWorkers, "seed-workers", 2, "concurrent webhook requests while seeding")

	fs.IntVar(&o.Idle, "idle", 100, "IMAP connections held in IDLE (K)")
	fs.IntVar(&o.IdleParallel, "idle-parallel", 32, "IMAP connections opened at a time")
	fs.StringVar(&o.IdleBarrier.ReadyFile, "idle-ready", "", "after opening the IDLE connections, write their count to this file (several load processes, bench/idle100k.sh)")
	fs.StringVar(&o.IdleBarrier.GoFile, "idle-go", "", "after opening the IDLE connections, wait until this file exists before the measured phase")
	srcAddrs := fs.String("source-addrs", "", "local loopback addresses the IMAP connections bind to, round-robin, e.g. 127.0.0.2,127.0.0.3 (each has ~28,000 ephemeral ports)")
	fs.IntVar(&o.DAV, "dav", 10, "CalDAV clients polling the way iOS does (C)")
	fs.DurationVar(&o.PollInterval, "poll-interval", time.Second, "pause between one CalDAV client's polls")
	fs.Float64Var(&o.Rate, "rate", 50, "webhook requests per second in the measured phase (R)")
	fs.IntVar(&o.Batch, "batch", 1, "tasks per webhook request in the measured phase")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "length of the measured phase (D)")
	fs.IntVar(&o.ProbeEvery, "probe-every", 0, "probe sync-collection visibility for every n-th webhook (0: about 20 probes/s)")
	fs.StringVar(&o.Trigger, "trigger", "webhook", "what makes new mail: webhook (duebridge) | append (IMAP APPEND, for Dovecot)")
	fs.IntVar(&o.MaxInflight, "max-inflight", 512, "bound on concurrent requests of the open-loop drivers")

	fs.IntVar(&o.Phones, "phones", 0, "phones mode: N phones (one user each) polling every 15 min")
	fs.Float64Var(&o.PhoneRate, "phone-rate", 0, "phones mode: home polls per second (default N/900, real time)")
	fs.Float64Var(&o.PhoneChange, "phone-change", 0.2, "phones mode: share of polls that find a changed list")
	fs.IntVar(&o.PhoneUsers, "phone-users", 0, "phones mode: distinct users (default = --phones)")
	fs.DurationVar(&o.PhoneCold, "phone-cold", time.Minute, "phones mode: bound on the cold phase (first polls, each a full password check)")
	fs.DurationVar(&o.SLO, "slo", time.Second, "phones mode: p99 bound of one poll for 'keeps up'")
	fs.BoolVar(&o.KeepAlive, "keepalive", false, "phones mode: reuse connections across phones (iOS sends Connection: close)")
	fs.BoolVar(&o.PhoneMinimal, "phone-minimal", true, "phones mode: send Prefer: return=minimal and Brief: t, as iOS does on every DAV request (the server leaves out the 404 propstats)")
	fs.IntVar(&o.PhoneWorkers, "phone-prep-workers", 8, "phones mode: concurrency of the untimed preparation")
	fs.IntVar(&o.ToolGOGC, "tool-gogc", 400, "the load tool's own GC target percent (debug.SetGCPercent; 0: GOGC or Go's default): its garbage collection is not the phones' work, and it shares the server's cores; the server started with --start keeps its own (GOGC in its environment)")
	fs.BoolVar(&o.TLS, "tls", false, "with --start: serve HTTPS with a dev CA the phones trust")
	fs.BoolVar(&o.TicketKeys, "tls-ticket-keys", false, "with --tls: the server seals session tickets with a key file (tls.ticket_keys_file), so they survive --restart-duration's restart")
	fs.BoolVar(&o.TLSResume, "tls-resume", true, "phones mode with --tls: each phone keeps its TLS session ticket between polls")
	fs.BoolVar(&o.DevicePWs, "device-passwords", false, "phones mode with --start: phones log in with device passwords; the cold phase compares them with the own (--hash) password side by side")
	fs.BoolVar(&o.ColdCompare, "cold-compare", true, "phones mode with --device-passwords: the cold phase runs half the phones on the own password for the side by side figure (false: every phone uses its device password, as in a capacity run)")
	fs.DurationVar(&o.RestartFor, "restart-duration", 0, "phones mode with --start: after the timed phase, kill the server, start it again and run the poll schedule this long from its cold caches")
	fs.StringVar(&o.Floor, "floor", "", "phones mode with --start --tls: record the home answer from duebridge, stop it, and run the phones against a server that only does TLS and HTTP and answers that recording: go (this binary's floor-serve, duebridge's TLS configuration) or haproxy; the floor of any CalDAV server on this machine")
	fs.StringVar(&o.HAProxy, "haproxy", "/usr/sbin/haproxy", "the HAProxy binary for --floor haproxy")
	fs.IntVar(&o.Returning, "returning", 200, "phones mode with --tls: polls of returning phones measured with a full handshake and with a resumed one, side by side")

	fs.StringVar(&o.DAVOps, "ops", "propfind,multiget,sync", "dav scenario: operations to measure, in order")
	fs.IntVar(&o.Workers, "workers", 4, "dav scenario: concurrent closed-loop clients")
	fs.IntVar(&o.MultigetSize, "multiget-size", 100, "dav scenario: hrefs per calendar-multiget (iOS sends 50)")
	fs.IntVar(&o.SyncDelta, "sync-delta", 10, "dav scenario: objects changed between the sync token and the measured syncs")
	fs.DurationVar(&o.Warmup, "warmup", time.Second, "dav scenario: unmeasured run of each operation before its measurement")
	fs.StringVar(&o.ExportICS, "export-ics", "", "dav scenario: write the user's collections as .ics files to this dir")
	fs.StringVar(&o.SeedICS, "seed-ics", "", "dav scenario: create collections and PUT the .ics files of this dir first")
	fs.StringVar(&o.DAVUser, "dav-user", "", "dav scenario: user to measure (default: the first)")

	fs.StringVar(&o.JSON, "json", "", "also write the report as JSON to this file (- = stdout)")
	fs.StringVar(&o.Label, "label", "", "name of the target in the report (duebridge, radicale, ...)")
	fs.BoolVar(&o.Quiet, "quiet", false, "no progress lines")
	fs.DurationVar(&o.MaxTime, "max-time", 30*time.Minute, "hard bound on the whole run")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "phones mode: write the load tool's own CPU profile of the first timed phase to this file (what the phones cost the shared cores)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if o.SourceAddrs, err = parseSourceAddrs(*srcAddrs); err != nil {
		return nil, err
	}
	if o.Phones > 0 {
		o.Scenario = "phones"
	}
	if o.Target == "" && o.IMAP == "" {
		o.Start = true
	}
	if o.Start && o.Target != "" {
		return nil, errors.New("--start and --target exclude each other")
	}
	if o.Target != "" {
		if err := loopbackOnly(o.Target, true); err != nil {
			return nil, err
		}
	}
	if o.IMAP != "" {
		if err := loopbackOnly(o.IMAP, false); err != nil {
			return nil, err
		}
	}
	switch o.Scenario {
	case "load", "phones", "dav":
	default:
		return nil, fmt.Errorf("--scenario %q: want load, phones or dav", o.Scenario)
	}
	switch o.Trigger {
	case "webhook", "append":
	default:
		return nil, fmt.Errorf("--trigger %q: want webhook or append", o.Trigger)
	}
	if o.Users < 1 || o.Projects < 1 || o.Batch < 1 || o.SeedBatch < 1 || o.SeedWorkers < 1 || o.MaxInflight < 1 {
		return nil, errors.New("--users, --projects, --batch, --seed-batch, --seed-workers and --max-inflight must be at least 1")
	}
	if o.Duration <= 0 || o.Duration > o.MaxTime {
		return nil, errors.New("--duration must be positive and within --max-time")
	}
	if o.Rate < 0 || o.Rate > 100000 {
		return nil, errors.New("--rate must be within 0..100000")
	}
	if (o.TLS || o.DevicePWs) && !o.Start {
		return nil, errors.New("--tls and --device-passwords need --start (the load tool makes the CA and the passwords)")
	}
	if o.CPUProfile != "" && o.Scenario != "phones" {
		return nil, errors.New("--cpuprofile is for phones mode (--phones)")
	}
	if o.TicketKeys && !o.TLS {
		return nil, errors.New("--tls-ticket-keys needs --tls")
	}
	if err := parseFloor(o); err != nil {
		return nil, err
	}
	if o.Label == "" {
		o.Label = "duebridge"
		if o.Floor != "" {
			o.Label = "floor-" + o.Floor
		}
	}
	return o, nil
}

// loopbackOnly refuses targets off this machine: the load tool is for
// loopback measurement only.
func loopbackOnly(s string, isURL bool) error {
	host := s
	if isURL {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return fmt.Errorf("--target %q is not a URL", s)
		}
		host = u.Host
	}
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = host
	}
	if h == "localhost" {
		return nil
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address: duebridge-load only loads this machine", s)
	}
	return nil
}

func main() {
	floorServeMain(os.Args) // the hidden floor-serve command exits here
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "duebridge-load:", err)
		os.Exit(2)
	}
	idleSources, idleBarrier = newSources(o.SourceAddrs), o.IdleBarrier
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, o, os.Stderr)
	if rep != nil {
		rep.print(os.Stdout)
		if o.JSON != "" {
			if werr := rep.writeJSON(o.JSON); werr != nil && err == nil {
				err = werr
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "duebridge-load:", err)
		os.Exit(1)
	}
}
