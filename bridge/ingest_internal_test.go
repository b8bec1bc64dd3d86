package bridge

import (
	"testing"
	"time"

	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/store"
)

func TestMailEventFor(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	open := &store.Task{Status: "open", Due: store.When{Time: t0}}
	done := &store.Task{Status: "done", Due: store.When{Time: t0}}
	moved := &store.Task{Status: "open", Due: store.When{Time: t0.Add(time.Hour)}}
	del := &store.Task{Status: "open", Deleted: true}
	cases := []struct {
		name         string
		old, new     *store.Task
		was, is      bool
		want         render.MailEvent
		wantAnything bool
	}{
		{"new assignment", nil, open, false, true, render.MailAssigned, true},
		{"assigned to a done task: nothing", nil, done, false, true, "", false},
		{"done", open, done, true, true, render.MailDone, true},
		{"reopened", done, open, true, true, render.MailReopened, true},
		{"due moved", open, moved, true, true, render.MailDueChanged, true},
		{"unassigned", open, open, true, false, render.MailUnassigned, true},
		{"deleted", open, del, true, false, render.MailDeleted, true},
		{"no change", open, open, true, true, "", false},
	}
	for _, c := range cases {
		got, ok := mailEventFor(c.old, c.new, c.was, c.is)
		if ok != c.wantAnything || got != c.want {
			t.Errorf("%s: got %q %v, want %q %v", c.name, got, ok, c.want, c.wantAnything)
		}
	}
}
