package bridge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-ical"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/store"
	"github.com/duebridge/duebridge/webhook"
)

// hook posts a signed webhook body as the tracker would.
func (e *davEnv) hook(body []byte) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest("POST", e.srv.URL+"/hooks/tracker", bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.SignatureHeader, webhook.Sign(testsvc.Secret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func (e *davEnv) collections(user string) []store.Collection {
	e.t.Helper()
	var out []store.Collection
	err := testsvc.Store(e.t, e.svc).View(context.Background(), func(tx store.Tx) error {
		var err error
		out, err = tx.Collections(user)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// TestPoisonBatchAccepted: CR, LF and other control characters in every
// text field of a batch (title with a due date, description, labels,
// project, id) are normalised, never a rendering error that the webhook
// answers 503 "retry later" for ever (issue 13 item 1). Every stored
// object parses.
func TestPoisonBatchAccepted(t *testing.T) {
	e := newDavEnv(t, nil)
	due := e.now.Add(48 * time.Hour).Format(time.RFC3339)
	nasty := "a\rb\nc\r\nd\x01e\x7ff\x1bg\x0bh\x0ci\u202ej\u0085k"
	var batch []map[string]any
	for i, status := range []string{"open", "in_progress", "done", "open"} {
		batch = append(batch, map[string]any{
			"id": fmt.Sprintf("P-%d", i), "title": "title " + nasty, "description": "desc " + nasty,
			"project": "proj " + nasty, "labels": []string{"l1 " + nasty, nasty, "x,y;z\\"},
			"assignees": []string{"alice", "bob"}, "due": due, "status": status, "priority": "urgent",
			"updated_at": e.now.Format(time.RFC3339),
		})
	}
	body, _ := json.Marshal(batch)
	status, reply := e.hook(body)
	if status != http.StatusOK {
		t.Fatalf("poison batch: %d %s", status, reply)
	}
	err := testsvc.Store(t, e.svc).View(context.Background(), func(tx store.Tx) error {
		for _, user := range []string{"alice", "bob"} {
			objs, err := tx.ObjectsOfUser(user)
			if err != nil {
				return err
			}
			if len(objs) != 8 {
				t.Errorf("%s has %d objects, want 4 reminders and 4 deadlines", user, len(objs))
			}
			for _, o := range objs {
				full, err := tx.Object(user, o.Collection, o.Name)
				if err != nil {
					return err
				}
				if _, err := ical.NewDecoder(bytes.NewReader(full.Data)).Decode(); err != nil {
					t.Errorf("%s/%s does not parse: %v\n%s", o.Collection, o.Name, err, full.Data)
				}
				for i, c := range full.Data {
					if (c < 0x20 && c != '\r' && c != '\n' && c != '\t') || c == 0x7f || (c == '\r' && (i+1 >= len(full.Data) || full.Data[i+1] != '\n')) {
						t.Errorf("%s/%s has control byte %#x at %d", o.Collection, o.Name, c, i)
						break
					}
				}
			}
			for _, c := range e.collections(user) {
				if strings.ContainsAny(c.DisplayName, "\r\n\x01\x7f\u202e\u0085") {
					t.Errorf("display name %q keeps control characters", c.DisplayName)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestControlCharInIDRefused: an id is identity, not text: a control
// character in it is refused with 400 naming the field and the record,
// and nothing of the batch is stored.
func TestControlCharInIDRefused(t *testing.T) {
	e := newDavEnv(t, nil)
	body := []byte(`[{"id":"ok","title":"fine","assignees":["alice"]},{"id":"bad\u0001","title":"x","assignees":["alice"]}]`)
	status, reply := e.hook(body)
	if status != http.StatusBadRequest || !strings.Contains(reply, `"field":"id"`) || !strings.Contains(reply, `"index":1`) {
		t.Fatalf("control character in id: %d %s", status, reply)
	}
	if n := len(e.collections("alice")); n != 0 {
		t.Fatalf("a refused batch stored %d collections", n)
	}
}

// TestDistinctProjectLists: projects whose names differ only in case or
// punctuation get lists of their own (issue 13), names shown without bidi
// controls; each project starts with its own colour, shared by its list
// and deadlines calendar, and its own place in the order; a colour the
// user chose (PROPPATCH) stays (issue 11 item 9).
func TestDistinctProjectLists(t *testing.T) {
	e := newDavEnv(t, nil)
	projects := []string{"evil", "EVIL!", "Evil", "\u202eevil\u2066", "Release", "Ops"}
	due := store.When{Time: e.now.Add(48 * time.Hour)}
	var batch []bridge.TaskInput // one batch: its writes are deferred, names must not clash meanwhile
	for i, p := range projects {
		batch = append(batch, bridge.TaskInput{ID: fmt.Sprintf("T-%d", i), Title: "t", Project: p, Assignees: []string{"alice"},
			Due: due, UpdatedAt: e.now, Version: 1})
	}
	e.seed(batch...)
	colls := e.collections("alice")
	if len(colls) != 2*len(projects) {
		t.Fatalf("%d collections for %d projects: %+v", len(colls), len(projects), colls)
	}
	byProject := map[string][]store.Collection{}
	orders := map[int]string{}
	for _, c := range colls {
		byProject[c.Project] = append(byProject[c.Project], c)
		if other, dup := orders[c.Order]; dup {
			t.Errorf("%s and %s share calendar-order %d", c.Name, other, c.Order)
		}
		orders[c.Order] = c.Name
		if strings.ContainsAny(c.DisplayName, "\u202e\u2066") {
			t.Errorf("display name %q keeps bidi controls", c.DisplayName)
		}
	}
	colours := map[string]string{}
	for p, cs := range byProject {
		if len(cs) != 2 || cs[0].Color != cs[1].Color || cs[0].Color == "" {
			t.Errorf("project %q: list and deadlines %+v should share one colour", p, cs)
			continue
		}
		if other, dup := colours[cs[0].Color]; dup {
			t.Errorf("projects %q and %q share colour %s", p, other, cs[0].Color)
		}
		colours[cs[0].Color] = p
	}
	// Each project's tasks are in its own list.
	for i, p := range projects {
		err := testsvc.Store(t, e.svc).View(context.Background(), func(tx store.Tx) error {
			objs, err := tx.ObjectsForTaskUser("tracker", fmt.Sprintf("T-%d", i), "alice", taskUIDs(fmt.Sprintf("T-%d", i)))
			for _, o := range objs {
				if c, err := tx.Collection("alice", o.Collection); err != nil || c.Project != p {
					t.Errorf("task of %q in %s (project %q)", p, o.Collection, c.Project)
				}
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	// The user's own colour wins over later updates.
	list := byProject["Release"][0].Name
	patch := `<?xml version="1.0" encoding="UTF-8"?><A:propertyupdate xmlns:A="DAV:"><A:set><A:prop>` +
		`<H:calendar-color xmlns:H="http://apple.com/ns/ical/">#711A76FF</H:calendar-color></A:prop></A:set></A:propertyupdate>`
	if resp, out := e.do("PROPPATCH", "/dav/alice/calendars/"+list+"/", patch, "Content-Type", "application/xml"); resp.StatusCode != http.StatusMultiStatus {
		t.Fatalf("PROPPATCH: %d %s", resp.StatusCode, out)
	}
	e.seed(bridge.TaskInput{ID: "T-1", Title: "t2", Project: "Release", Assignees: []string{"alice"}, Due: due, UpdatedAt: e.now.Add(time.Minute), Version: 2},
		bridge.TaskInput{ID: "T-99", Title: "new", Project: "Release", Assignees: []string{"alice"}, UpdatedAt: e.now, Version: 1})
	for _, c := range e.collections("alice") {
		if c.Name == list && c.Color != "#711A76FF" {
			t.Fatalf("user's colour replaced by %s", c.Color)
		}
	}
}

// TestProjectColourStable: a project's starting colour depends only on its
// name, not on which projects came before it or on the user.
func TestProjectColourStable(t *testing.T) {
	a := newDavEnv(t, nil)
	b := newDavEnv(t, nil)
	due := store.When{Time: a.now.Add(48 * time.Hour)}
	a.seed(bridge.TaskInput{ID: "1", Title: "t", Project: "Payments", Assignees: []string{"alice"}, Due: due})
	b.seed(bridge.TaskInput{ID: "1", Title: "t", Project: "Zebra", Assignees: []string{"alice"}, Due: due},
		bridge.TaskInput{ID: "2", Title: "t", Project: "Payments", Assignees: []string{"alice"}, Due: due})
	colour := func(e *davEnv) string {
		for _, c := range e.collections("alice") {
			if c.Project == "Payments" {
				return c.Color
			}
		}
		return ""
	}
	want := render.Palette[render.ProjectColor("Payments")]
	if colour(a) != want || (render.ProjectColor("Zebra") != render.ProjectColor("Payments") && colour(b) != want) {
		t.Fatalf("Payments is %s alone and %s after Zebra, want %s", colour(a), colour(b), want)
	}
}

// TestSharedListSplitAtStart: a store from before distinct list names has
// "evil" and "EVIL!" in one list; the re-render at start moves the second
// project's tasks to a list of its own and leaves the first one's where
// they were (the phone keeps its list).
func TestSharedListSplitAtStart(t *testing.T) {
	e := newDavEnv(t, nil)
	e.seed(bridge.TaskInput{ID: "T-1", Title: "a", Project: "evil", Assignees: []string{"alice"}},
		bridge.TaskInput{ID: "T-2", Title: "b", Project: "EVIL!", Assignees: []string{"alice"}})
	ctx := context.Background()
	// Make it look like the old store: T-2's reminder inside evil-tasks.
	err := testsvc.Store(t, e.svc).Update(ctx, func(tx store.Tx) error {
		objs, err := tx.ObjectsForTaskUser("tracker", "T-2", "alice", taskUIDs("T-2"))
		if err != nil || len(objs) != 1 {
			return fmt.Errorf("T-2 objects %v: %v", objs, err)
		}
		o, err := tx.Object("alice", objs[0].Collection, objs[0].Name)
		if err != nil {
			return err
		}
		if err := tx.DeleteObject("alice", o.Collection, o.Name); err != nil {
			return err
		}
		o.Collection = "evil-tasks"
		if err := tx.PutObject(o); err != nil {
			return err
		}
		return tx.Set("render_version", "1")
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.RerenderIfStale(ctx); err != nil {
		t.Fatal(err)
	}
	err = testsvc.Store(t, e.svc).View(ctx, func(tx store.Tx) error {
		in, err := tx.Objects("alice", "evil-tasks", false)
		if err != nil {
			return err
		}
		if len(in) != 1 || in[0].TaskID != "T-1" {
			t.Errorf("evil-tasks holds %+v, want only T-1", in)
		}
		objs, err := tx.ObjectsForTaskUser("tracker", "T-2", "alice", taskUIDs("T-2"))
		if err != nil {
			return err
		}
		for _, o := range objs {
			if c, err := tx.Collection("alice", o.Collection); err != nil || c.Project != "EVIL!" {
				t.Errorf("T-2 in %s, not a list of EVIL!'s own", o.Collection)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// taskUIDs are the UIDs of a tracker task's reminder and deadline event.
func taskUIDs(id string) []string {
	return []string{render.TodoUID("tracker", id), render.EventUID("tracker", id)}
}
