package bridge

import (
	"context"
	"fmt"
	"testing"

	"github.com/duebridge/duebridge/imapserver"
)

// BenchmarkPushRefresh: the IMAP refresh an open INBOX makes after each
// webhook's commit: Changes from a view one new mail behind (30 mails in
// the mailbox). "cpu-us/op" is the process's CPU time per refresh.
func BenchmarkPushRefresh(b *testing.B) {
	ctx := context.Background()
	s := groupService(b)
	for i := range 30 {
		if _, err := s.Ingest(ctx, "tracker", []TaskInput{groupTask(fmt.Sprint("T-", i), "alice")}); err != nil {
			b.Fatal(err)
		}
	}
	be := s.IMAP()
	all, err := be.Changes(ctx, "alice", Inbox, imapserver.View{MailboxModSeq: -1})
	if err != nil {
		b.Fatal(err)
	}
	n := len(all.Messages)
	prev := all.Messages[n-2]
	view := imapserver.View{MailboxModSeq: prev.ModSeq, MessageModSeq: prev.ModSeq, Count: n - 1, LastUID: prev.UID}
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for range b.N {
		ch, err := be.Changes(ctx, "alice", Inbox, view)
		if err != nil || len(ch.Messages) != 1 {
			b.Fatalf("%v, %+v", err, ch)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
}
