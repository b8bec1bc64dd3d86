package bridge

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/clock"
	"github.com/duebridge/duebridge/store"
)

// callbackWorker delivers queued completion callbacks: POST with the
// source's signature, any 2xx ends a delivery, anything else is retried with
// exponential backoff (capped), across restarts since the queue is in the
// store. A crash between a 2xx and its bookkeeping re-sends the same
// event_id, which receivers de-duplicate on.
type callbackWorker struct {
	s       *Service
	client  *http.Client
	clock   clock.Clock
	tracker TrackerFunc
	pending prometheus.GaugeFunc
	sent    *prometheus.CounterVec
}

// callbackOptions for newCallbackWorker.
type callbackOptions struct {
	// Client; if nil, one with a 15s timeout is used.
	Client *http.Client
	// Tracker, if set, is offered every completion first, to close or
	// reopen the issue through the task system's own API; if nil, only the
	// generic callback is sent.
	Tracker TrackerFunc
}

// TrackerFunc updates the issue behind a completion in its task system
// (sources[].api_token). It reports handled=false for a source it has
// nothing to do for. When it handled the completion, the generic callback
// follows only if the source also has a callback_url. Kept as a function
// so that bridge knows no task system: the adapters supply it.
type TrackerFunc func(ctx context.Context, src *config.Source, body CallbackBody) (handled bool, err error)

// Backoff bounds for failed deliveries.
const (
	// callbackClaim is how long a claimed callback stays invisible to other
	// workers: well past the client timeout, so a crashed worker's claim
	// lapses and another delivers it.
	callbackClaim      = 2 * time.Minute
	callbackFirstRetry = 10 * time.Second
	callbackMaxRetry   = time.Hour
	// Retries of the bookkeeping after a send while the store is away.
	callbackStoreRetry    = 250 * time.Millisecond
	callbackStoreRetryMax = 5 * time.Second
)

// newCallbackWorker builds the worker and registers its metrics.
func newCallbackWorker(s *Service, o callbackOptions) *callbackWorker {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 15 * time.Second}
	}
	// The service's clock: tests run the backoff in virtual time through
	// bridge.Options.Clock.
	w := &callbackWorker{s: s, client: o.Client, clock: s.clock, tracker: o.Tracker}
	w.sent = register(s, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "duebridge_callbacks_total", Help: "Completion callback attempts, by result (delivered|failed).",
	}, []string{"result"}))
	gauge := func(failing bool) func() float64 {
		return func() float64 {
			var p, f int
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			s.st.View(ctx, func(tx store.Tx) error {
				var err error
				p, f, err = tx.OutboxCounts()
				return err
			})
			if failing {
				return float64(f)
			}
			return float64(p)
		}
	}
	register(s, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "duebridge_callbacks_pending", Help: "Completion callbacks waiting for delivery."}, gauge(false)))
	register(s, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "duebridge_callbacks_failing", Help: "Pending completion callbacks that failed at least once."}, gauge(true)))
	return w
}

// Run delivers until ctx is done.
func (w *callbackWorker) Run(ctx context.Context) error {
	sub := w.s.hub.Subscribe("", store.EventOutbox)
	defer sub.Close()
	timer := w.clock.NewTimer(0)
	defer timer.Stop()
	lastPrune := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sub.C:
		case <-timer.C():
		}
		next, err := w.deliverDue(ctx)
		if err != nil && ctx.Err() == nil {
			w.s.log.Error("callback delivery", "err", err)
			next = w.clock.Now().Add(callbackFirstRetry)
		}
		if now := w.clock.Now(); now.Sub(lastPrune) > time.Hour {
			lastPrune = now
			w.s.st.Update(ctx, func(tx store.Tx) error { return tx.PruneDelivered(now.Add(-30 * 24 * time.Hour)) })
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(w.clock.Now()), 0)
		}
		// Reset never delivers a stale tick (Go 1.23 timers; the fake clock alike).
		timer.Reset(wait)
	}
}

// deliverDue sends every due callback and returns when the next is due
// (zero if none is pending).
func (w *callbackWorker) deliverDue(ctx context.Context) (time.Time, error) {
outer:
	for {
		var due []store.Callback
		var claimedAt time.Time
		// Claim what is due by pushing its next attempt past the delivery
		// timeout, in a write transaction: several processes on one
		// PostgreSQL database then never send the same callback at once.
		err := w.s.st.Update(ctx, func(tx store.Tx) error {
			now := w.clock.Now()
			var err error
			if due, err = tx.DueCallbacks(now, 50); err != nil {
				return err
			}
			claimedAt = now
			return claimCallbacks(tx, due, now)
		})
		if err != nil {
			return time.Time{}, err
		}
		if len(due) == 0 {
			break
		}
	batch:
		for i, c := range due {
			if ctx.Err() != nil {
				w.release(due[i:])
				return time.Time{}, nil
			}
			// A batch of slow receivers outlasts one claim (50 sends of up
			// to 15s each against 2 minutes): renew the claim on the rest
			// of the batch half-way through it, while it still holds, so
			// that no other worker takes them up meanwhile and sends them
			// a second time. Every send ends within the claim (sendCtx).
			if now := w.clock.Now(); !now.Before(claimedAt.Add(callbackClaim / 2)) {
				if !now.Before(claimedAt.Add(callbackClaim)) {
					break batch // lapsed (a stall): the rest is due again for whoever claims it
				}
				rest := due[i:]
				if err := w.s.st.Update(ctx, func(tx store.Tx) error { return claimCallbacks(tx, rest, now) }); err != nil {
					return time.Time{}, err // the claim still holds for a minute and lapses by itself
				}
				claimedAt = now
			}
			sendCtx, cancel := context.WithTimeout(ctx, callbackClaim/2)
			sendErr := w.send(sendCtx, c)
			cancel()
			rest := due[i+1:]
			failures, err := w.record(ctx, c, sendErr, claimedAt.Add(callbackClaim), rest)
			if err != nil {
				return time.Time{}, err
			}
			if sendErr == nil {
				w.sent.WithLabelValues("delivered").Inc()
				w.s.log.Info("callback delivered", "source", c.Source, "task", c.TaskID, "event_id", c.EventID)
			} else {
				w.sent.WithLabelValues("failed").Inc()
				w.s.log.Warn("callback failed; will retry", "source", c.Source, "task", c.TaskID, "attempt", c.Attempts+1, "err", sendErr)
			}
			if failures > 0 {
				// The store was away and has released the rest of the
				// batch: claim afresh (another worker may take some).
				continue outer
			}
		}
	}
	var next time.Time
	err := w.s.st.View(ctx, func(tx store.Tx) error {
		t, ok, err := tx.NextCallback()
		if ok {
			next = t
		}
		return err
	})
	return next, err
}

// record writes the outcome of one send. When the store fails (a database
// restart), it retries with backoff while the claim still holds (until
// claimEnd): giving up would leave the rest of the batch hidden until the
// claim lapses and re-send a delivered callback then. Once the store answers
// after a failure, the same transaction releases rest (makes it due now), so
// that nothing waits out the claim; failures says how many attempts failed.
func (w *callbackWorker) record(ctx context.Context, c store.Callback, sendErr error, claimEnd time.Time, rest []store.Callback) (failures int, err error) {
	delay := callbackStoreRetry
	for {
		now := w.clock.Now()
		// A send that happened is recorded even while the worker stops.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err = w.s.st.Update(uctx, func(tx store.Tx) error {
			var err error
			if sendErr == nil {
				err = tx.MarkDelivered(c.ID, now)
			} else {
				attempts := c.Attempts + 1
				err = tx.MarkFailed(c.ID, attempts, now.Add(backoff(attempts)), sendErr.Error())
			}
			if err != nil || failures == 0 {
				return err
			}
			return releaseCallbacks(tx, rest, now)
		})
		cancel()
		if err == nil {
			if failures > 0 {
				w.s.log.Info("callback bookkeeping recovered; released the rest of the batch", "event_id", c.EventID, "failures", failures, "released", len(rest))
			}
			return failures, nil
		}
		failures++
		if ctx.Err() != nil || !w.clock.Now().Add(delay).Before(claimEnd) {
			return failures, fmt.Errorf("record callback %s (gave up within its claim after %d tries): %w", c.EventID, failures, err)
		}
		w.s.log.Warn("callback bookkeeping failed; retrying", "event_id", c.EventID, "in", delay, "err", err)
		select {
		case <-ctx.Done():
		case <-w.clock.After(delay):
		}
		delay = min(2*delay, callbackStoreRetryMax)
	}
}

// release makes the unsent rest of a batch due again when the worker stops
// mid-batch, so another worker need not wait out the claim. Best effort:
// the claim lapses by itself if the store does not answer.
func (w *callbackWorker) release(rest []store.Callback) {
	if len(rest) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now := w.clock.Now()
	if err := w.s.st.Update(ctx, func(tx store.Tx) error { return releaseCallbacks(tx, rest, now) }); err != nil {
		w.s.log.Warn("release unsent callbacks; they wait out their claim", "count", len(rest), "err", err)
	}
}

// releaseCallbacks makes claimed, unsent callbacks due at now.
func releaseCallbacks(tx store.Tx, cs []store.Callback, now time.Time) error {
	for _, c := range cs {
		if err := tx.ClaimCallback(c.ID, now); err != nil {
			return err
		}
	}
	return nil
}

// claimCallbacks hides callbacks from other workers for callbackClaim from now.
func claimCallbacks(tx store.Tx, cs []store.Callback, now time.Time) error {
	for _, c := range cs {
		if err := tx.ClaimCallback(c.ID, now.Add(callbackClaim)); err != nil {
			return err
		}
	}
	return nil
}

// backoff after n failed attempts: 10s, 20s, 40s ... capped at an hour.
func backoff(n int) time.Duration {
	d := callbackFirstRetry
	for i := 1; i < n && d < callbackMaxRetry; i++ {
		d *= 2
	}
	return min(d, callbackMaxRetry)
}

func (w *callbackWorker) send(ctx context.Context, c store.Callback) error {
	src := w.s.Config().Source(c.Source)
	if src == nil {
		return fmt.Errorf("source %q is no longer configured", c.Source)
	}
	if w.tracker != nil {
		var body CallbackBody
		if err := json.Unmarshal(c.Body, &body); err != nil {
			return fmt.Errorf("queued callback %s: %w", c.EventID, err)
		}
		handled, err := w.tracker(ctx, src, body)
		if err != nil {
			return err
		}
		if handled && src.CallbackURL == nil {
			return nil
		}
	}
	if src.CallbackURL == nil {
		return errNoCallbackURL
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, src.CallbackURL.String(), bytes.NewReader(c.Body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(SignatureHeader, Sign(src.Secret, c.Body))
	req.Header.Set("X-Duebridge-Event-Id", c.EventID)
	req.Header.Set("User-Agent", "duebridge-callback/1")
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return errors.New("callback answered " + resp.Status)
	}
	return nil
}

// SignatureHeader carries the contract's signature on webhooks and callbacks.
const SignatureHeader = "X-Duebridge-Signature"

// Sign returns the SignatureHeader value for body: "sha256=" and the hex
// HMAC-SHA256 of the body under the source's secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// RetryFailedCallbacks makes every failing callback due now (the admin
// page's button, after fixing a receiver), in one transaction, and wakes
// the workers. Callbacks due within a claim are left alone: they are being
// delivered right now (a second send would duplicate it) or due shortly anyway.
func (s *Service) RetryFailedCallbacks(ctx context.Context) (int, error) {
	var n int
	err := s.st.Update(ctx, func(tx store.Tx) error {
		now := s.clock.Now()
		var err error
		if n, err = tx.RetryFailed(now, now.Add(callbackClaim)); err != nil {
			return err
		}
		if n > 0 {
			tx.Emit(store.Event{Kind: store.EventOutbox})
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("retrying failed callbacks: %w", err)
	}
	return n, nil
}
