package store_test

// Benchmarks, each on SQLite and (when TEST_DUEBRIDGE_POSTGRES is set) on
// PostgreSQL:
//
//	go test -run '^$' -bench . ./store/
//
// BenchmarkPutTaskBatch: one Update upserting 1,000 tasks (a large webhook
// batch), durable on return. BenchmarkChanges: a sync-collection query for
// the last 10 (or 1,000) changes in a collection of 1,000 or 100,000 objects;
// its cost should follow the number of changes, not the collection's size.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duebridge/duebridge/store"
)

// benchBackends runs fn once per database; PostgreSQL is skipped (with the
// instruction) unless TEST_DUEBRIDGE_POSTGRES is set.
func benchBackends(b *testing.B, fn func(b *testing.B, be backend)) {
	b.Run(store.SQLite, func(b *testing.B) { fn(b, sqliteBackend()) })
	b.Run(store.Postgres, func(b *testing.B) { fn(b, postgresBackend(b)) })
}

func openBench(b *testing.B, be backend) store.Store {
	b.Helper()
	s, err := store.Open(b.Context(), be.dialect, be.newSource(b), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func BenchmarkPutTaskBatch(b *testing.B) {
	const batch = 1000
	benchBackends(b, func(b *testing.B, be backend) {
		s := openBench(b, be)
		tasks := make([]store.Task, batch)
		for i := range tasks {
			tasks[i] = sampleTask(fmt.Sprintf("T-%04d", i))
			tasks[i].Description = "A task as a tracker sends it, with a paragraph of description text that makes the row a realistic size."
			tasks[i].URL = "https://tracker.example.com/" + tasks[i].ID
			tasks[i].Labels = []string{"backend", "release"}
			tasks[i].Due = store.When{Time: t0.AddDate(0, 0, i%30)}
		}
		round := 0
		for b.Loop() {
			round++
			err := s.Update(b.Context(), func(tx store.Tx) error {
				for i := range tasks {
					t := tasks[i]
					t.Version = int64(round)
					if err := tx.PutTask(&t); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "tasks/s")
	})
}

func BenchmarkChanges(b *testing.B) {
	benchBackends(b, func(b *testing.B, be backend) {
		for _, size := range []int{1000, 100_000} {
			s, since := populateCollection(b, be, size)
			for _, changes := range []int{10, 1000} {
				if changes == 1000 && size != 100_000 {
					continue
				}
				b.Run(fmt.Sprintf("objects=%d/changes=%d", size, changes), func(b *testing.B) {
					var got []store.Object
					for b.Loop() {
						err := s.View(b.Context(), func(tx store.Tx) (err error) {
							got, err = tx.Changes("alice", "todos", since[changes])
							return err
						})
						if err != nil {
							b.Fatal(err)
						}
					}
					if len(got) != changes {
						b.Fatalf("Changes: got %d objects, want %d", len(got), changes)
					}
				})
			}
		}
	})
}

// populateCollection fills alice's "todos" with size objects, then changes
// 1,000 of them one transaction at a time. since[n] is the sync token that
// the last n changes come after (n = 10, 1000).
func populateCollection(b *testing.B, be backend, size int) (store.Store, map[int]int64) {
	b.Helper()
	s := openBench(b, be)
	const perTx = 5000
	for start := 0; start < size; start += perTx {
		err := s.Update(b.Context(), func(tx store.Tx) error {
			if start == 0 {
				if _, err := tx.EnsureCollection(&store.Collection{User: "alice", Name: "todos", Kind: store.KindTodos}); err != nil {
					return err
				}
			}
			for i := start; i < min(start+perTx, size); i++ {
				o := sampleObject("alice", "todos", fmt.Sprintf("T-%06d", i))
				if err := tx.PutObject(&o); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	const changes = 1000
	since := map[int]int64{}
	for i := range changes {
		err := s.Update(b.Context(), func(tx store.Tx) error {
			seq, err := tx.Seq()
			if err != nil {
				return err
			}
			if left := changes - i; left == 10 || left == 1000 {
				since[left] = seq - 1
			}
			o := sampleObject("alice", "todos", fmt.Sprintf("T-%06d", (i*7919)%size))
			o.ETag = fmt.Sprintf(`"changed-%d"`, i)
			return tx.PutObject(&o)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return s, since
}

// BenchmarkConcurrentWrites: writers on several goroutines, each storing
// one task (a webhook) followed by an empty write transaction (the
// scheduler's pass after each commit), all durable. Writers must queue
// for their turn, not sleep in SQLite's busy handler (1, 2, 5 ... 100 ms
// whatever the holder does): besides ns/op it reports the p99 of one
// task's Update, wait included ("p99-ms").
func BenchmarkConcurrentWrites(b *testing.B) {
	benchBackends(b, func(b *testing.B, be backend) {
		s := openBench(b, be)
		var n atomic.Int64
		var mu sync.Mutex
		var lat []time.Duration
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			var mine []time.Duration
			for pb.Next() {
				t := sampleTask(fmt.Sprintf("W-%d", n.Add(1)))
				start := time.Now()
				if err := s.Update(b.Context(), func(tx store.Tx) error { return tx.PutTask(&t) }); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(start))
				if err := s.Update(b.Context(), func(tx store.Tx) error { return nil }); err != nil {
					b.Error(err)
					return
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
		if len(lat) > 0 {
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)*99/100])/float64(time.Millisecond), "p99-ms")
		}
	})
}

// ensureTenLists gives user a phone's ten lists: five projects, each a
// Reminders list and a deadlines calendar.
func ensureTenLists(tx store.Tx, user string) error {
	for p := range 5 {
		for _, kind := range []string{store.KindTodos, store.KindEvents} {
			c := store.Collection{User: user, Name: fmt.Sprintf("project-%d-%s", p, kind), Project: fmt.Sprintf("Project %d", p), Kind: kind}
			if _, err := tx.EnsureCollection(&c); err != nil {
				return err
			}
		}
	}
	return nil
}

// BenchmarkPollView is the store's part of an iPhone's background poll: one
// read transaction finding the device password and listing the user's ten
// lists. Short transactions like this spent as long preparing their SQL as
// running it.
func BenchmarkPollView(b *testing.B) {
	benchBackends(b, func(b *testing.B, be backend) {
		s := openBench(b, be)
		err := s.Update(b.Context(), func(tx store.Tx) error {
			if err := ensureTenLists(tx, "anna"); err != nil {
				return err
			}
			return tx.AddDevicePassword(&store.DevicePassword{ID: "dev1", User: "anna", Name: "iPhone", Hash: []byte("hash")})
		})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			err := s.View(b.Context(), func(tx store.Tx) error {
				if _, err := tx.DevicePassword("dev1"); err != nil {
					return err
				}
				cols, err := tx.Collections("anna")
				if err == nil && len(cols) != 10 {
					err = fmt.Errorf("%d collections, want 10", len(cols))
				}
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPollCollectionsMany is the same read among 40,000 users, a
// random one each time, whose lists were made as a server makes them: a
// project's lists for all its members at once, project after project, so
// one user's lists were made far apart. On SQLite that spread a user's rows
// over ten pages of a rowid table until collections was keyed by the user
// (migration 75).
func BenchmarkPollCollectionsMany(b *testing.B) {
	const users = 40000
	benchBackends(b, func(b *testing.B, be backend) {
		s := openBench(b, be)
		for p := range 5 {
			for _, kind := range []string{store.KindTodos, store.KindEvents} {
				err := s.Update(b.Context(), func(tx store.Tx) error {
					for u := range users {
						c := store.Collection{User: fmt.Sprintf("user-%06d", u), Name: fmt.Sprintf("project-%d-%s", p, kind),
							Project: fmt.Sprintf("Project %d", p), Kind: kind}
						if _, err := tx.EnsureCollection(&c); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		}
		r := rand.New(rand.NewPCG(1, 2))
		b.ReportAllocs()
		for b.Loop() {
			user := fmt.Sprintf("user-%06d", r.IntN(users))
			err := s.Read(b.Context(), func(tx store.Tx) error {
				cols, err := tx.Collections(user)
				if err == nil && len(cols) != 10 {
					err = fmt.Errorf("%d collections of %s, want 10", len(cols), user)
				}
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPollCollections is a phone poll's one store read, the user's ten
// lists, in a View (BEGIN, the query, ROLLBACK) and in a Read (the query
// alone), with a cancellable context as a request has.
func BenchmarkPollCollections(b *testing.B) {
	benchBackends(b, func(b *testing.B, be backend) {
		s := openBench(b, be)
		err := s.Update(b.Context(), func(tx store.Tx) error {
			if err := ensureTenLists(tx, "anna"); err != nil {
				return err
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		list := func(tx store.Tx) error {
			cols, err := tx.Collections("anna")
			if err == nil && len(cols) != 10 {
				err = fmt.Errorf("%d collections, want 10", len(cols))
			}
			return err
		}
		for _, r := range []struct {
			name string
			run  func(context.Context, func(store.Tx) error) error
		}{{"view", s.View}, {"read", s.Read}} {
			b.Run(r.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := r.run(b.Context(), list); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	})
}
