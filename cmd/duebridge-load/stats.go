package main

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// maxSamples bounds the memory of one Hist: past it, samples are kept by
// reservoir sampling, so percentiles stay unbiased and the run stays bounded.
const maxSamples = 1 << 20

// Hist records the latencies of one kind of operation: every sample up to
// maxSamples, then a uniform reservoir; counts are always exact.
type Hist struct {
	Name string
	// Unit "ms" (latency) is the default; "ops" marks counters whose rate is
	// the interesting figure (Rate is reported for every Hist anyway).
	mu      sync.Mutex
	samples []time.Duration
	seen    int64
	max     time.Duration
	sum     time.Duration
	rng     *rand.Rand

	win  window       // samples since the last progress line
	n    atomic.Int64 // completed operations (for the progress line)
	errs atomic.Int64
	// items counts work units inside operations (tasks in a batch, objects
	// in a multiget) when they differ from operations.
	items atomic.Int64
}

func newHist(name string) *Hist {
	return &Hist{Name: name, rng: rand.New(rand.NewPCG(1, uint64(len(name))))}
}

// Add records one successful operation that took d.
func (h *Hist) Add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.n.Add(1)
	h.win.add(d)
	h.mu.Lock()
	h.seen++
	h.sum += d
	if d > h.max {
		h.max = d
	}
	if len(h.samples) < maxSamples {
		h.samples = append(h.samples, d)
	} else if j := h.rng.Int64N(h.seen); j < maxSamples {
		h.samples[j] = d
	}
	h.mu.Unlock()
}

// Err records one failed operation.
func (h *Hist) Err() { h.errs.Add(1) }

// Items adds work units (tasks, objects) done inside operations.
func (h *Hist) Items(n int) { h.items.Add(int64(n)) }

// Summary is what the table and the JSON report show for one Hist.
type Summary struct {
	Name    string  `json:"name"`
	Count   int64   `json:"count"`
	Errors  int64   `json:"errors"`
	Items   int64   `json:"items,omitempty"`
	Seconds float64 `json:"seconds"`
	Rate    float64 `json:"per_second"`
	ItemRat float64 `json:"items_per_second,omitempty"`
	MeanMS  float64 `json:"mean_ms"`
	P50MS   float64 `json:"p50_ms"`
	P90MS   float64 `json:"p90_ms"`
	P99MS   float64 `json:"p99_ms"`
	MaxMS   float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Summarize computes the summary over elapsed (the time the operations were
// spread over, for the rates).
func (h *Hist) Summarize(elapsed time.Duration) Summary {
	h.mu.Lock()
	s := slices.Clone(h.samples)
	seen, sum, mx := h.seen, h.sum, h.max
	h.mu.Unlock()
	slices.Sort(s)
	out := Summary{Name: h.Name, Count: seen, Errors: h.errs.Load(), Items: h.items.Load(), Seconds: elapsed.Seconds()}
	if elapsed > 0 {
		out.Rate = float64(seen) / elapsed.Seconds()
		out.ItemRat = float64(out.Items) / elapsed.Seconds()
	}
	if len(s) > 0 {
		out.MeanMS = ms(sum / time.Duration(seen))
		out.P50MS = ms(pct(s, 0.50))
		out.P90MS = ms(pct(s, 0.90))
		out.P99MS = ms(pct(s, 0.99))
		out.MaxMS = ms(mx)
	}
	return out
}

// pct is the nearest-rank percentile of sorted samples.
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}

// window keeps the samples of the last progress interval for the progress
// line: count and p99 of the last second.
type window struct {
	mu sync.Mutex
	d  []time.Duration
}

func (w *window) add(d time.Duration) {
	w.mu.Lock()
	if len(w.d) < 1<<16 {
		w.d = append(w.d, d)
	}
	w.mu.Unlock()
}

func (w *window) take() (n int, p99 time.Duration) {
	w.mu.Lock()
	d := w.d
	w.d = nil
	w.mu.Unlock()
	slices.Sort(d)
	return len(d), pct(d, 0.99)
}

// firstError keeps the first error of concurrent workers (atomic.Value
// refuses errors of different concrete types).
type firstError struct {
	mu  sync.Mutex
	err error
}

func (f *firstError) set(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}
