package store_test

import (
	"slices"
	"testing"

	"github.com/duebridge/duebridge/store"
)

// TestCountersNeedNoReturning: on SQLite the revision bump and the UID
// allocation of an append or a copy run no UPDATE ... RETURNING (SQLite
// opens an ephemeral table, with its own pager, for every such run; the
// revision bump was the dearest statement of a webhook's turn), and still
// allocate as before: revisions one apart, UIDs dense and ascending.
func TestCountersNeedNoReturning(t *testing.T) {
	s, d := openCounting(t, store.Options{})
	if err := s.Update(t.Context(), func(tx store.Tx) error {
		for _, name := range []string{"INBOX", "Archive"} {
			if _, err := tx.EnsureMailbox("alice", name, ""); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	before := d.returning.Load()
	var seqs []int64
	var uids []uint32
	for i := range 3 {
		if err := s.Update(t.Context(), func(tx store.Tx) error {
			seq, err := tx.Seq()
			if err != nil {
				return err
			}
			seqs = append(seqs, seq)
			m := &store.Message{User: "alice", Mailbox: "INBOX", Data: []byte("Subject: " + string(rune('a'+i)) + "\r\n\r\nbody\r\n")}
			if err := tx.AppendMessage(m); err != nil {
				return err
			}
			if m.ModSeq != seq {
				t.Errorf("mail %d: MODSEQ %d, want the revision %d", i, m.ModSeq, seq)
			}
			uids = append(uids, m.UID)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	var copied []uint32
	if err := s.Update(t.Context(), func(tx store.Tx) (err error) {
		_, copied, err = tx.CopyMessages("alice", "INBOX", "Archive", uids, false)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if n := d.returning.Load() - before; n != 0 {
		t.Errorf("revision bumps, appends and a copy ran %d statements with RETURNING, want 0", n)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Errorf("revisions %v: want one apart", seqs)
		}
	}
	if want := []uint32{uids[0], uids[0] + 1, uids[0] + 2}; !slices.Equal(uids, want) {
		t.Errorf("appended UIDs %v, want %v", uids, want)
	}
	if want := []uint32{1, 2, 3}; !slices.Equal(copied, want) {
		t.Errorf("copied UIDs %v, want %v", copied, want)
	}
	var inbox, archive *store.Mailbox
	if err := s.View(t.Context(), func(tx store.Tx) (err error) {
		if inbox, err = tx.Mailbox("alice", "INBOX"); err != nil {
			return err
		}
		archive, err = tx.Mailbox("alice", "Archive")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inbox.UIDNext != uids[2]+1 || archive.UIDNext != 4 {
		t.Errorf("UIDNEXT INBOX %d, Archive %d; want %d, 4", inbox.UIDNext, archive.UIDNext, uids[2]+1)
	}
	if archive.ModSeq != seqs[2]+1 {
		t.Errorf("Archive's MODSEQ %d after the copy, want its revision %d", archive.ModSeq, seqs[2]+1)
	}
}
