package bridge

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/duebridge/duebridge/store"
)

// TestNewTaskWritesOneUIDIndexPage: a new task's VTODO and VEVENT go into
// objects_uid next to each other (migration 74 keys it by the UID without
// its "task-" or "deadline-" prefix), so each new-task commit writes about
// one page of that index, not two. Every page is a WAL frame, two syscalls
// inside the single writer's turn. The frames the commits append to the
// WAL are mapped to their b-trees with SQLite's dbstat.
func TestNewTaskWritesOneUIDIndexPage(t *testing.T) {
	s := groupService(t)
	users := []string{"alice", "bob", "carol"}
	ingest := func(id string, i int) {
		in := groupTask(id, users[i%3])
		in.Project = fmt.Sprintf("Project %d", (i/3)%10)
		if _, err := s.Ingest(context.Background(), "tracker", []TaskInput{in}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 200 { // a store that is not brand new
		ingest(fmt.Sprintf("warm-%d", i), i)
	}
	// A read held open keeps the checkpoint from recycling the WAL, so
	// every frame the commits write stays in it.
	hold, held, done := make(chan struct{}), make(chan struct{}), make(chan error)
	go func() {
		done <- s.st.View(context.Background(), func(tx store.Tx) error {
			_, err := tx.Task("tracker", "warm-1")
			close(held)
			<-hold
			return err
		})
	}()
	<-held
	dir := s.Config().DataDir
	wal := filepath.Join(dir, "duebridge.db-wal")
	fi, err := os.Stat(wal)
	if err != nil {
		t.Fatal(err)
	}
	const n = 60
	for i := range n {
		ingest(fmt.Sprintf("T-%d", i), i)
	}
	data, err := os.ReadFile(wal)
	close(hold)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	const frame = 24 + 4096 // WAL frame header + page
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "duebridge.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT pageno FROM dbstat WHERE name = 'objects_uid'`)
	if err != nil {
		t.Fatal(err)
	}
	uidPages := map[uint32]bool{}
	for rows.Next() {
		var p uint32
		if err := rows.Scan(&p); err != nil {
			t.Fatal(err)
		}
		uidPages[p] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	frames := 0
	for off := fi.Size(); off+frame <= int64(len(data)); off += frame {
		if uidPages[binary.BigEndian.Uint32(data[off:])] {
			frames++
		}
	}
	if per := float64(frames) / n; per > 1.7 { // 2.1 with the whole UID as the key
		t.Errorf("objects_uid: %.2f pages written per new task, want about 1 (its VTODO and VEVENT side by side)", per)
	} else {
		t.Logf("objects_uid: %.2f pages per new task", per)
	}
}
