package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Figure is one named scalar of a run (tasks/s while seeding, bytes per idle
// connection, ...).
type Figure struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// Target is one of issue #8's targets as this run saw it.
type Target struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
}

// Report is what a run prints and writes as JSON.
type Report struct {
	Scenario string         `json:"scenario"`
	Label    string         `json:"label"`
	Target   string         `json:"target"`
	Date     string         `json:"date"`
	Params   map[string]any `json:"params"`
	Ops      []Summary      `json:"ops"`
	Figures  []Figure       `json:"figures"`
	Targets  []Target       `json:"targets"`
	Notes    []string       `json:"notes,omitempty"`
	// Minutes of each timed phones phase, by the phase's label ("" for the
	// first).
	Minutes map[string][]Minute `json:"minutes,omitempty"`
}

func newReport(o *options) *Report {
	return &Report{Scenario: o.Scenario, Label: o.Label, Date: time.Now().UTC().Format(time.RFC3339), Params: map[string]any{}}
}

func (r *Report) op(h *Hist, elapsed time.Duration) Summary {
	s := h.Summarize(elapsed)
	if s.Count > 0 || s.Errors > 0 {
		r.Ops = append(r.Ops, s)
	}
	return s
}

func (r *Report) fig(name string, v float64, unit string) {
	r.Figures = append(r.Figures, Figure{name, v, unit})
}

func (r *Report) target(name, want, got string, met bool) {
	r.Targets = append(r.Targets, Target{name, want, got, met})
}

func (r *Report) minutes(label string, ms []Minute) {
	if len(ms) == 0 {
		return
	}
	if r.Minutes == nil {
		r.Minutes = map[string][]Minute{}
	}
	r.Minutes[label] = ms
}

func (r *Report) note(format string, a ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, a...))
}

// Op returns the summary of an operation by name (zero if absent).
func (r *Report) Op(name string) Summary {
	for _, s := range r.Ops {
		if s.Name == name {
			return s
		}
	}
	return Summary{}
}

// Fig returns a figure by name.
func (r *Report) Fig(name string) (float64, bool) {
	for _, f := range r.Figures {
		if f.Name == name {
			return f.Value, true
		}
	}
	return 0, false
}

func (r *Report) print(w io.Writer) {
	fmt.Fprintf(w, "\n== duebridge-load %s against %s (%s) %s\n", r.Scenario, r.Label, r.Target, r.Date)
	if len(r.Ops) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "operation\tcount\terrors\tper s\titems/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\t")
		for _, s := range r.Ops {
			items := ""
			if s.Items > 0 {
				items = fmt.Sprintf("%.0f", s.ItemRat)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t\n",
				s.Name, s.Count, s.Errors, s.Rate, items, s.P50MS, s.P90MS, s.P99MS, s.MaxMS)
		}
		tw.Flush()
	}
	if len(r.Figures) > 0 {
		fmt.Fprintln(w)
		for _, f := range r.Figures {
			fmt.Fprintf(w, "  %-52s %14s %s\n", f.Name, fmtNum(f.Value), f.Unit)
		}
	}
	for _, label := range slices.Sorted(maps.Keys(r.Minutes)) {
		printMinutes(w, label, r.Minutes[label])
	}
	if len(r.Targets) > 0 {
		fmt.Fprintln(w, "\ntargets (issue #8):")
		for _, t := range r.Targets {
			mark := "MISSED"
			if t.Met {
				mark = "met"
			}
			fmt.Fprintf(w, "  %-6s %-58s want %-14s got %s\n", mark, t.Name, t.Want, t.Got)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

func fmtNum(v float64) string {
	switch {
	case v == float64(int64(v)) && v < 1e15 && v > -1e15:
		return fmt.Sprintf("%d", int64(v))
	case v >= 100 || v <= -100:
		return fmt.Sprintf("%.0f", v)
	default:
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
	}
}

func (r *Report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "-" {
		_, err = os.Stdout.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
