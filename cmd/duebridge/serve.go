package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/clock"
	"github.com/duebridge/duebridge/setup"
	"github.com/duebridge/duebridge/store"
	"github.com/duebridge/duebridge/webhook"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Addrs are the addresses the listeners got (real ports when :0 was asked).
type Addrs struct {
	HTTP net.Addr
	IMAP net.Addr
	// IMAPTLS, Submission and SubmissionTLS are nil when not configured.
	IMAPTLS       net.Addr
	Submission    net.Addr
	SubmissionTLS net.Addr
}

type serveOptions struct {
	// Logger; if nil, slog.Default().
	Logger *slog.Logger
	// Ready is called once every listener is bound and serving. The
	// start's re-render checks may still be running then (Rerendered).
	Ready func(Addrs, *bridge.Service)
	// Rerendered, if set, is called once the start's re-render checks
	// (bridge.Service.StartRerender) have ended, with their error (nil
	// when done; the context's error when serve stopped first).
	Rerendered func(error)
	// Clock is the one clock of the service and its store; nil = the wall
	// clock.
	Clock clock.Clock
	// Opened, if set, is called with the service and its store once both
	// are open (tests read the store to check what the protocols stored).
	Opened func(*bridge.Service, store.Store)
	// HTTPTimeouts; zero fields take the defaults (tests shorten them).
	HTTPTimeouts httpTimeouts
}

// serve runs duebridge until ctx is done or SIGINT/SIGTERM arrives. It is the
// only place that wires packages together. Shutdown runs in reverse order:
// HTTP drains in-flight requests (webhook 200s come after their commit), IMAP
// closes, background loops leave on ctx, and the store closes last.
func serve(ctx context.Context, cfg *config.Config, o serveOptions) error {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	log := o.Logger
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	// The one clock (the service hands it to the store), the one registry.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	st, svc, err := openService(ctx, cfg, bridge.Options{Logger: log, Clock: o.Clock, Registry: reg,
		Tracker: webhook.NewCloser(webhook.CloserOptions{}).Deliver})
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("close store", "err", err)
		}
	}()
	if o.Opened != nil {
		o.Opened(svc, st)
	}
	if cfg.Demo {
		if err := seedDemo(ctx, st, svc); err != nil {
			return fmt.Errorf("seed demo tasks: %w", err)
		}
	}

	// Listen first: the printed URLs and tests use the real ports.
	httpLn, err := listenHTTP(ctx, cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("listen http %s: %w", cfg.HTTP.Listen, err)
	}
	defer httpLn.Close()
	trusted := func() []netip.Prefix { return svc.Config().HTTP.TrustedProxies }
	httpLn = limitPerAddress(httpLn, cfg.Limits.ConnsPerAddress, trusted, connsRefused(reg).WithLabelValues("http"))

	// TLS: certificates from files are re-read when the files change
	// (renewal without restart), or come from ACME; every listener shares
	// the same source. tlsConf is nil without TLS.
	certs, err := newCertSource(cfg, log, reg)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	tlsConf := certs.TLSConfig()
	if tlsConf != nil {
		c := tlsConf.Clone()
		c.NextProtos = certs.HTTPNextProtos()
		httpLn = tls.NewListener(httpLn, c)
	}

	mail, err := listenMail(cfg, svc, tlsConf, log, trusted)
	if err != nil {
		return err
	}
	defer mail.close()

	httpSrv := newHTTPServer(realClient(routes(svc, log, setup.Options{Logger: log, Certificate: certs.Certificate, Root: certs.Root}), trusted),
		log, o.HTTPTimeouts)

	var wg sync.WaitGroup
	errc := make(chan error, 8)
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	goRun := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				// The first failure stops the server; later ones (the
				// others failing as it stops) are logged, never left to
				// block a goroutine shutdown waits for.
				select {
				case errc <- fmt.Errorf("%s: %w", name, err):
				default:
					log.Error("background task failed", "task", name, "err", err)
				}
			}
		}()
	}

	goRun("http", func() error {
		if err := httpSrv.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	// The start's re-render checks (new rendering rules, config changed
	// while stopped) run while the listeners serve: at a million users
	// they take seconds to minutes, and every second before the listener
	// is bound refuses a second's polls. Polls meanwhile see the last
	// run's objects, then the changes through ETags and sync tokens (see
	// StartRerender). The lock is taken here, before the config watch
	// starts, so a reload's re-render always comes after this one. A
	// failure stops the server, as it stopped the start before.
	rerender := svc.StartRerender()
	goRun("start re-render", func() error {
		err := rerender(runCtx)
		if o.Rerendered != nil {
			o.Rerendered(err)
		}
		if runCtx.Err() != nil {
			return nil // stopping: the next start checks again
		}
		return err
	})
	// The scheduler, retention, completion callbacks and device upkeep.
	goRun("core", func() error { return svc.Run(runCtx) })
	if err := startStreams(cfg, svc, log, goRun, runCtx); err != nil {
		return err
	}
	if cfg.Path != "" {
		goRun("config watch", func() error {
			return config.Watch(runCtx, cfg.Path, config.WatchOptions{}, func(c *config.Config) {
				if keys := config.RestartRequired(svc.Config(), c); len(keys) > 0 {
					log.Warn("config changed keys that need a restart; they keep their old values until then", "keys", keys)
					c = config.KeepRestartKeys(svc.Config(), c)
				}
				svc.SetConfig(runCtx, c)
				debug.FreeOSMemory() // the reload's parse garbage, as after the first load
				log.Info("config reloaded", "path", c.Path, "users", len(c.Users), "sources", len(c.Sources))
			}, func(err error) {
				log.Error("config reload refused; the running config stays", "err", err)
			})
		})
	}

	addrs := Addrs{HTTP: httpLn.Addr()}
	mail.serve(goRun, &addrs)
	log.Info("duebridge serving", "http", addrs.HTTP.String(), "store", cfg.Store, "demo", cfg.Demo)
	if o.Ready != nil {
		o.Ready(addrs, svc)
	}

	select {
	case <-ctx.Done():
	case err = <-errc:
		log.Error("a listener failed; shutting down", "err", err)
	}
	log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := httpSrv.Shutdown(shutCtx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	mail.close()
	cancelRun()
	wg.Wait()
	return err
}

// printReady prints where everything is; for the demo also the credentials.
// URLs use http.public_url, the name phones and trackers use; when the
// server actually listens elsewhere (a reverse proxy or NAT in front, or
// port 0) that address is printed too, so neither is a surprise.
func printReady(w io.Writer, cfg *config.Config) func(Addrs, *bridge.Service) {
	return func(a Addrs, svc *bridge.Service) {
		scheme := "http"
		if cfg.TLS.Enabled() {
			scheme = "https"
		}
		listening := scheme + "://" + a.HTTP.String()
		base := svc.Config().HTTP.PublicURL.String()
		if cfg.Demo || cfg.Origin("http.public_url") == config.FromDefault {
			base = listening // derived from http.listen: the real port
		}
		fmt.Fprintf(w, "duebridge is running\n")
		if base != listening {
			fmt.Fprintf(w, "  Public:   %s  (http.public_url: what phones and trackers use)\n", base)
			fmt.Fprintf(w, "  Listens:  %s  (http.listen)\n", listening)
		}
		fmt.Fprintf(w, "  CalDAV:   %s/.well-known/caldav  (principal %s/dav/<user>/)\n", base, base)
		if a.IMAP != nil {
			fmt.Fprintf(w, "  IMAP:     %s\n", a.IMAP)
		}
		if a.IMAPTLS != nil {
			fmt.Fprintf(w, "  IMAPS:    %s\n", a.IMAPTLS)
		}
		for _, s := range []struct {
			label string
			addr  net.Addr
		}{{"SMTP:", a.Submission}, {"SMTPS:", a.SubmissionTLS}} {
			if s.addr != nil {
				fmt.Fprintf(w, "  %-9s %s  (outgoing server for mail apps: accepts the login, sends nothing)\n", s.label, s.addr)
			}
		}
		fmt.Fprintf(w, "  Webhooks: %s/hooks/<source>\n", base)
		fmt.Fprintf(w, "  Setup:    %s/setup\n", base)
		fmt.Fprintf(w, "  Health:   %s/healthz  %s/readyz  %s/metrics\n", base, base, base)
		if cfg.Demo {
			fmt.Fprintf(w, "\n*** DEMO SET-UP (no --config): loopback only, throwaway data in %s ***\n", cfg.DataDir)
			for _, u := range config.DemoUsers {
				fmt.Fprintf(w, "  demo user:      %-6s password %s\n", u[0], u[1])
			}
			fmt.Fprintf(w, "  webhook source: %s (POST %s/hooks/%s), secret %s\n", config.DemoSource, base, config.DemoSource, config.DemoSecret)
		}
	}
}

// openService opens the configured store under a new service; the caller
// closes the store once done with the service.
func openService(ctx context.Context, cfg *config.Config, o bridge.Options) (store.Store, *bridge.Service, error) {
	var st store.Store
	svc, err := bridge.New(func(so store.Options) (store.Store, error) {
		so.Logger = o.Logger
		var err error
		st, err = store.Open(ctx, cfg.Store, cfg.StoreSource(), so)
		return st, err
	}, cfg, o)
	if err != nil {
		return nil, nil, err
	}
	return st, svc, nil
}
