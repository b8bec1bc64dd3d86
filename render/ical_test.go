package render

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-ical"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/store"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/golden")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("..", "testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./bridge/ -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

var (
	t0     = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	berlin = mustLoc("Europe/Berlin")
)

func mustLoc(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return l
}

func sampleTask() *store.Task {
	return &store.Task{
		Source: "tracker", ID: "T-123", Title: "Ship release 2.1, with notes; and \\ backslash",
		Description: "Tag, build and publish.\r\nThen announce it — in the café channel, with a long line that goes well past seventy-five octets so it must be folded.",
		URL:         "https://tracker.example.com/T-123", Project: "Release", Assignees: []string{"alice"},
		Labels: []string{"release", "q4"}, Due: store.When{Time: time.Date(2026, 12, 1, 17, 0, 0, 0, time.UTC)},
		Status: "open", Priority: "high", Sequence: 3, Created: t0.Add(-48 * time.Hour), Modified: t0,
	}
}

func alice(notify config.Notify, loc *time.Location) *config.User {
	return &config.User{Name: "alice", Email: "alice@example.com", Notify: notify, Location: loc}
}

func decode(t *testing.T, data []byte) *ical.Component {
	t.Helper()
	cal, err := ical.NewDecoder(bytes.NewReader(data)).Decode()
	if err != nil {
		t.Fatalf("our output does not parse: %v\n%s", err, data)
	}
	if len(cal.Children) != 1 {
		t.Fatalf("want one component, got %d", len(cal.Children))
	}
	return cal.Children[0]
}

func alarmsOf(c *ical.Component) []*ical.Component {
	var out []*ical.Component
	for _, ch := range c.Children {
		if ch.Name == ical.CompAlarm {
			out = append(out, ch)
		}
	}
	return out
}

func triggerTime(t *testing.T, a *ical.Component) time.Time {
	t.Helper()
	p := a.Props.Get(ical.PropTrigger)
	tt, err := p.DateTime(time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	return tt
}

func TestRenderTodoGolden(t *testing.T) {
	in := Input{Task: sampleTask(), User: alice(config.NotifyAlarms, time.UTC), LeadTimes: []time.Duration{24 * time.Hour, time.Hour}}
	data, err := Todo(in)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "todo-timed.ics", data)
	c := decode(t, data)
	if got, _ := c.Props.Text(ical.PropSummary); got != in.Task.Title {
		t.Errorf("SUMMARY round trip: %q", got)
	}
	if c.Props.Get(ical.PropSequence).Value != "3" || c.Props.Get(ical.PropPriority).Value != "5" {
		t.Errorf("SEQUENCE/PRIORITY wrong (high is PRIORITY:5, iOS's medium)")
	}
	al := alarmsOf(c)
	if len(al) != 2 {
		t.Fatalf("want 2 alarms, got %d", len(al))
	}
	for i, lead := range in.LeadTimes {
		if got := triggerTime(t, al[i]); !got.Equal(in.Task.Due.Time.Add(-lead)) {
			t.Errorf("alarm %d at %v, want %v", i, got, in.Task.Due.Time.Add(-lead))
		}
	}
}

func TestRenderAllDay(t *testing.T) {
	task := sampleTask()
	task.Due = store.When{Time: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), AllDay: true}
	in := Input{Task: task, User: alice(config.NotifyBoth, berlin), LeadTimes: []time.Duration{24 * time.Hour, time.Hour}}
	todo, err := Todo(in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(todo, []byte("DUE;VALUE=DATE:20261201\r\n")) {
		t.Errorf("all-day due must be DUE;VALUE=DATE, got:\n%s", todo)
	}
	if bytes.Contains(todo, []byte("T235900")) {
		t.Error("fake all-day 23:59 time")
	}
	// Alarms anchor at 09:00 Berlin (08:00 UTC in winter) on the due date.
	al := alarmsOf(decode(t, todo))
	want := []time.Time{time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC)}
	for i := range al {
		if got := triggerTime(t, al[i]); !got.Equal(want[i]) {
			t.Errorf("alarm %d at %v, want %v", i, got, want[i])
		}
	}
	ev, err := Event(in)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "event-allday.ics", ev)
	for _, want := range []string{"DTSTART;VALUE=DATE:20261201\r\n", "DTEND;VALUE=DATE:20261202\r\n", "TRANSP:TRANSPARENT\r\n"} {
		if !bytes.Contains(ev, []byte(want)) {
			t.Errorf("event lacks %q", want)
		}
	}
}

func TestAlarmRules(t *testing.T) {
	leads := []time.Duration{24 * time.Hour, time.Hour}
	cases := []struct {
		name   string
		mutate func(*store.Task)
		user   *config.User
		want   int
	}{
		{"open, alarms", func(*store.Task) {}, alice(config.NotifyAlarms, time.UTC), 2},
		{"open, both", func(*store.Task) {}, alice(config.NotifyBoth, time.UTC), 2},
		{"mail only: no alarms", func(*store.Task) {}, alice(config.NotifyMail, time.UTC), 0},
		{"done: none", func(t *store.Task) { t.Status = "done" }, alice(config.NotifyAlarms, time.UTC), 0},
		{"cancelled: none", func(t *store.Task) { t.Status = "cancelled" }, alice(config.NotifyAlarms, time.UTC), 0},
		{"no due: none", func(t *store.Task) { t.Due = store.When{} }, alice(config.NotifyAlarms, time.UTC), 0},
		{"changed 2h before due: only the 1h alarm", func(t *store.Task) { t.Modified = t.Due.Time.Add(-2 * time.Hour) }, alice(config.NotifyAlarms, time.UTC), 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			task := sampleTask()
			c.mutate(task)
			in := Input{Task: task, User: c.user, LeadTimes: leads}
			data, err := Todo(in)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(alarmsOf(decode(t, data))); got != c.want {
				t.Errorf("%d alarms, want %d", got, c.want)
			}
			// One alerting object per task: the reminder. The deadline
			// event never carries alarms, or each alert fires twice.
			ev, err := Event(in)
			if err != nil {
				t.Fatal(err)
			}
			if ev != nil && len(alarmsOf(decode(t, ev))) != 0 {
				t.Errorf("deadline event carries alarms:\n%s", ev)
			}
		})
	}
}

func TestRenderDeterministicAndSequence(t *testing.T) {
	in := Input{Task: sampleTask(), User: alice(config.NotifyAlarms, time.UTC), LeadTimes: []time.Duration{time.Hour}}
	a, _ := Todo(in)
	b, _ := Todo(in)
	if !bytes.Equal(a, b) || ETag(a) != ETag(b) {
		t.Fatal("same input rendered differently")
	}
	in.Task.Sequence++
	c, _ := Todo(in)
	if ETag(c) == ETag(a) {
		t.Fatal("ETag unchanged after a change")
	}
	if !strings.HasPrefix(ETag(a), `"`) || strings.HasPrefix(ETag(a), `W/`) {
		t.Fatal("ETag must be strong and quoted")
	}
}

func TestPhoneStateMerged(t *testing.T) {
	phone := PhoneState{
		Alarms: "BEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:Reminder\r\nTRIGGER;VALUE=DATE-TIME:20261201T080000Z\r\nUID:PHONE-1\r\nX-WR-ALARMUID:PHONE-1\r\nEND:VALARM\r\n",
		Props:  []string{"X-APPLE-SORT-ORDER:740793996"},
		Bumps:  2,
	}
	in := Input{Task: sampleTask(), User: alice(config.NotifyAlarms, time.UTC), LeadTimes: []time.Duration{time.Hour}, Phone: phone}
	data, err := Todo(in)
	if err != nil {
		t.Fatal(err)
	}
	c := decode(t, data)
	if n := len(alarmsOf(c)); n != 2 {
		t.Errorf("want our alarm and the phone's, got %d", n)
	}
	if c.Props.Get("X-APPLE-SORT-ORDER") == nil {
		t.Error("X-APPLE-SORT-ORDER not kept")
	}
	if c.Props.Get(ical.PropSequence).Value != "5" {
		t.Errorf("SEQUENCE %s, want 3+2", c.Props.Get(ical.PropSequence).Value)
	}
	if enc, _ := ParsePhoneState(phone.Encode()); enc.Bumps != 2 || enc.Alarms != phone.Alarms {
		t.Error("PhoneState encode/parse round trip")
	}
}

func TestFold(t *testing.T) {
	long := "DESCRIPTION:" + strings.Repeat("é€x", 60) + "\r\nSUMMARY:short\r\n"
	out := Fold([]byte(long))
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\r\n"), "\r\n") {
		if len(line) > 75 {
			t.Errorf("line of %d octets: %q", len(line), line)
		}
		if !utf8.ValidString(line) {
			t.Errorf("fold split a UTF-8 sequence: %q", line)
		}
	}
	if unfolded := strings.ReplaceAll(string(out), "\r\n ", ""); unfolded != long {
		t.Error("unfolding does not give the original back")
	}
	if got := Fold([]byte("A:b\r\n")); string(got) != "A:b\r\n" {
		t.Errorf("short line changed: %q", got)
	}
}

func TestObjectNames(t *testing.T) {
	if a, b := ObjectName("tracker", "a/b"), ObjectName("tracker", "a_2Fb"); a == b {
		t.Errorf("distinct ids share a name: %s", a)
	}
	if n := ObjectName("gh", "owner/repo#12"); strings.ContainsAny(n, "/#? ") || !strings.HasSuffix(n, ".ics") {
		t.Errorf("unsafe object name %q", n)
	}
	todo, ev := CollectionNames("Release 2.x / Ops")
	if todo != "release-2-x-ops-tasks" || ev != "release-2-x-ops-deadlines" {
		t.Errorf("collection names %q %q", todo, ev)
	}
	if todo, _ := CollectionNames(""); todo != "inbox-tasks" {
		t.Errorf("no project: %q", todo)
	}
	if todo, _ := CollectionNames("inbox"); todo == "inbox-tasks" {
		t.Error("a project named inbox shares the list of tasks without a project")
	}
	// Projects in other scripts get lists of their own, not one shared "inbox".
	ru, _ := CollectionNames("Релиз")
	ja, _ := CollectionNames("リリース")
	mixed, _ := CollectionNames("Café 2")
	if ru == ja || ru == "inbox-tasks" || !strings.HasPrefix(mixed, "caf-2-p") || strings.ContainsAny(ru+ja+mixed, "/ ") {
		t.Errorf("non-ASCII project names: %q %q %q", ru, ja, mixed)
	}
}

// TestSetTextMatchesGoICal: setText stores the property go-ical's SetText
// stores (value, VALUE parameter), for plain text, every escaped byte,
// multi-byte UTF-8, invalid UTF-8, and property names with and without a
// TEXT default type.
func TestSetTextMatchesGoICal(t *testing.T) {
	texts := []string{"", "plain", "a,b;c\\d\ne", "\\\\,,;;\n\n", "Fällig — café, 🎉;", "bad \xff byte, \xc3", "\r\ttab\r\n",
		strings.Repeat("long, line; ", 40)}
	names := []string{ical.PropSummary, ical.PropUID, ical.PropStatus, ical.PropDescription, ical.PropVersion, ical.PropTransparency, "X-OTHER"}
	for _, name := range names {
		for _, text := range texts {
			want, got := ical.Props{}, ical.Props{}
			want.SetText(name, text)
			setText(got, name, text)
			var wb, gb bytes.Buffer
			for _, p := range []struct {
				props ical.Props
				buf   *bytes.Buffer
			}{{want, &wb}, {got, &gb}} {
				c := ical.NewComponent("X-TEST")
				c.Props = p.props
				if err := ical.NewEncoder(p.buf).Encode(&ical.Calendar{Component: c}); err != nil {
					p.buf.WriteString("error: " + err.Error()) // go-ical refuses a bare CR either way
				}
			}
			if wb.String() != gb.String() || !reflect.DeepEqual(got, want) {
				t.Errorf("%s %q:\n got %q %+v\nwant %q %+v", name, text, gb.String(), got, wb.String(), want)
			}
		}
	}
}

// TestEncodeBuffersAreNotShared: objects rendered at once (a batch renders
// on every core) each keep their own bytes after their buffers are reused.
func TestEncodeBuffersAreNotShared(t *testing.T) {
	const n = 64
	out := make([][]byte, n)
	done := make(chan int)
	for i := range n {
		go func() {
			b, err := encode(uidTodo(i))
			if err != nil {
				t.Error(err)
			}
			out[i] = b
			done <- i
		}()
	}
	for range n {
		<-done
	}
	for i := range n { // rendered again after every buffer went back to the pool
		want, err := encode(uidTodo(i))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out[i], want) {
			t.Errorf("object %d changed after its buffer was reused:\n got %q\nwant %q", i, out[i], want)
		}
	}
}

func uidTodo(i int) *ical.Component {
	c := ical.NewComponent(ical.CompToDo)
	setText(c.Props, ical.PropUID, strings.Repeat(string(rune('a'+i%26)), 50+i))
	c.Props.SetDateTime(ical.PropDateTimeStamp, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	return c
}
