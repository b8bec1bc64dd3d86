package render

import (
	"testing"
	"time"

	"github.com/duebridge/duebridge/config"
)

// Rendering benchmarks: the pure per-(task, user) work that every webhook
// upsert does once per assignee (VTODO, VEVENT) and once per notification
// (mail). Ingest renders these in parallel, so ns/op here bounds how many
// upserts per second two cores can render. Fixtures are the golden tests'.

func renderInput() Input {
	return Input{Task: sampleTask(), User: alice(config.NotifyAlarms, time.UTC),
		LeadTimes: []time.Duration{24 * time.Hour, time.Hour}}
}

// BenchmarkRenderTodo: one VTODO with two VALARMs, folded, as stored.
func BenchmarkRenderTodo(b *testing.B) {
	in := renderInput()
	b.ReportAllocs()
	var n int
	for b.Loop() {
		data, err := Todo(in)
		if err != nil {
			b.Fatal(err)
		}
		n = len(data)
	}
	b.SetBytes(int64(n))
}

// BenchmarkRenderTodoPhoneState: the same with alarms and properties a
// phone wrote, merged back in on every rendering.
func BenchmarkRenderTodoPhoneState(b *testing.B) {
	in := renderInput()
	in.Phone = PhoneState{
		Alarms: "BEGIN:VALARM\r\nUID:A1\r\nX-WR-ALARMUID:A1\r\nACTION:DISPLAY\r\nDESCRIPTION:Reminder\r\n" +
			"TRIGGER;VALUE=DATE-TIME:20261201T080000Z\r\nEND:VALARM\r\n",
		Props: []string{"X-APPLE-SORT-ORDER:744000000"},
		Bumps: 2,
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Todo(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRenderEvent: the deadline VEVENT of the same task.
func BenchmarkRenderEvent(b *testing.B) {
	in := renderInput()
	b.ReportAllocs()
	var n int
	for b.Loop() {
		data, err := Event(in)
		if err != nil {
			b.Fatal(err)
		}
		n = len(data)
	}
	b.SetBytes(int64(n))
}

// BenchmarkNotificationMail: the "assigned" mail (text, HTML and the task
// as text/calendar) that a new task writes into its assignee's INBOX.
func BenchmarkNotificationMail(b *testing.B) {
	for _, ev := range []MailEvent{MailAssigned, MailDueChanged} {
		b.Run(string(ev), func(b *testing.B) {
			in := sampleMail(ev)
			b.ReportAllocs()
			var n int
			for b.Loop() {
				data, err := NotificationMail(in)
				if err != nil {
					b.Fatal(err)
				}
				n = len(data)
			}
			b.SetBytes(int64(n))
		})
	}
}

// BenchmarkRenderUpsert: everything rendered for one new task with one
// assignee: VTODO, VEVENT and the assignment mail.
func BenchmarkRenderUpsert(b *testing.B) {
	in := renderInput()
	mail := sampleMail(MailAssigned)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Todo(in); err != nil {
			b.Fatal(err)
		}
		if _, err := Event(in); err != nil {
			b.Fatal(err)
		}
		if _, err := NotificationMail(mail); err != nil {
			b.Fatal(err)
		}
	}
}
