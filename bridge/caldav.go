package bridge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duebridge/duebridge/calendar"
	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/store"
)

// CalDAV returns the core as the CalDAV handler's backend: every read one
// store snapshot, every write one transaction.
func (s *Service) CalDAV() calendar.Backend { return caldavBackend{s} }

type caldavBackend struct{ s *Service }

var _ calendar.Backend = caldavBackend{}

// Authenticate also accepts a user name with its @ URL-encoded
// (user%40example.com), as iOS may send it.
func (b caldavBackend) Authenticate(ctx context.Context, name, password, remoteAddr string) (*calendar.User, error) {
	cfg := b.s.Config()
	if strings.Contains(name, "%") && cfg.User(name) == nil {
		if dec, err := url.PathUnescape(name); err == nil && cfg.User(dec) != nil {
			name = dec
		}
	}
	u, err := b.s.AuthenticateFrom(ctx, "caldav", name, password, remoteAddr)
	if err != nil {
		var locked *LockoutError
		if errors.As(err, &locked) {
			return nil, &calendar.LockedOutError{Until: locked.Until}
		}
		return nil, err
	}
	return &calendar.User{Name: u.Name, Email: u.Email, Location: u.Location}, nil
}

func (b caldavBackend) Users() []string {
	cfg := b.s.Config()
	names := make([]string, len(cfg.Users))
	for i := range cfg.Users {
		names[i] = cfg.Users[i].Name
	}
	return names
}

func (b caldavBackend) Limits() calendar.Limits {
	l := b.s.Config().Limits
	return calendar.Limits{ICalObjectBytes: l.ICalObjectBytes, MultigetHrefs: l.MultigetHrefs,
		RecurrenceSteps: l.RecurrenceSteps, RecurrenceStepsPerRequest: l.RecurrenceStepsPerRequest,
		QuotaBytes: l.OwnReminderBytesPerUser, SyncHealthUsers: l.SyncHealthUsers}
}

func (b caldavBackend) Now() time.Time { return b.s.Now() }

func (b caldavBackend) Registerer() prometheus.Registerer { return b.s.metrics.Registry }

// epochKey is where the sync-token epoch is kept.
const epochKey = "caldav_sync_epoch"

func (b caldavBackend) SyncEpoch(ctx context.Context) (string, error) {
	var epoch string
	err := b.s.st.View(ctx, func(tx store.Tx) error {
		v, err := tx.Get(epochKey)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		epoch = v
		return err
	})
	if err != nil || epoch != "" {
		return epoch, err
	}
	err = b.s.st.Update(ctx, func(tx store.Tx) error {
		if v, err := tx.Get(epochKey); err == nil { // another process won the race
			epoch = v
			return nil
		}
		buf := make([]byte, 6)
		rand.Read(buf)
		epoch = hex.EncodeToString(buf)
		return tx.Set(epochKey, epoch)
	})
	return epoch, err
}

func (b caldavBackend) Quota(ctx context.Context, user string) (used, available int64, err error) {
	err = b.s.st.Read(ctx, func(tx store.Tx) error { // one SELECT
		_, used, err = tx.OwnUsage(user)
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("quota of %s: %w", user, err)
	}
	limit := b.s.Config().Limits.OwnReminderBytesPerUser
	if limit <= 0 {
		return used, -1, nil // no limit
	}
	return used, max(0, limit-used), nil
}

// Collections is every phone poll's read: one SELECT, so a Read (no
// transaction around it) is its snapshot.
func (b caldavBackend) Collections(ctx context.Context, user string) ([]calendar.Collection, error) {
	var out []calendar.Collection
	err := b.s.st.Read(ctx, func(tx store.Tx) error {
		colls, err := tx.Collections(user)
		out = make([]calendar.Collection, len(colls))
		for i := range colls {
			out[i] = davCollection(&colls[i])
		}
		return err
	})
	return out, davErr(err)
}

// inCollection reads a collection and, if read is not nil, more in the
// same snapshot (a View); the collection alone is one SELECT (a Read).
func (b caldavBackend) inCollection(ctx context.Context, user, coll string, read func(tx store.Tx, c *store.Collection) error) (calendar.Collection, error) {
	var out calendar.Collection
	snapshot := b.s.st.View
	if read == nil {
		snapshot = b.s.st.Read
	}
	err := snapshot(ctx, func(tx store.Tx) error {
		c, err := tx.Collection(user, coll)
		if err != nil {
			return err
		}
		out = davCollection(c)
		if read == nil {
			return nil
		}
		return read(tx, c)
	})
	return out, davErr(err)
}

func (b caldavBackend) Collection(ctx context.Context, user, coll string) (calendar.Collection, error) {
	return b.inCollection(ctx, user, coll, nil)
}

func (b caldavBackend) Object(ctx context.Context, user, coll, name string) (calendar.Collection, calendar.Object, error) {
	var o calendar.Object
	c, err := b.inCollection(ctx, user, coll, func(tx store.Tx, _ *store.Collection) error {
		so, err := tx.Object(user, coll, name)
		if err == nil {
			o = davObject(so)
		}
		return err
	})
	return c, o, err
}

func (b caldavBackend) Objects(ctx context.Context, user, coll string, withData bool) (calendar.Collection, []calendar.Object, error) {
	var out []calendar.Object
	c, err := b.inCollection(ctx, user, coll, func(tx store.Tx, _ *store.Collection) error {
		objs, err := tx.Objects(user, coll, withData)
		out = davObjects(objs)
		return err
	})
	return c, out, err
}

// ObjectsByName is a multiget's read. Its common cases need no
// transaction: the collection alone (one SELECT) when the cache holds
// every object at its revision, else the collection with the missing
// objects (one more SELECT, of at most store.ObjectsByNameChunk names)
// when its revision is still the one names saw. A write in between, or
// more names, is read in one View, as every case was before.
func (b caldavBackend) ObjectsByName(ctx context.Context, user, coll string, names func(seq int64) []string) (calendar.Collection, []calendar.Object, error) {
	var sc *store.Collection
	err := b.s.st.Read(ctx, func(tx store.Tx) (err error) {
		sc, err = tx.Collection(user, coll)
		return err
	})
	if err != nil {
		return calendar.Collection{}, nil, davErr(err)
	}
	want := names(sc.Seq)
	if len(want) == 0 {
		return davCollection(sc), nil, nil
	}
	if len(want) <= store.ObjectsByNameChunk {
		var objs []store.Object
		seq := sc.Seq
		err := b.s.st.Read(ctx, func(tx store.Tx) (err error) {
			sc, objs, err = tx.CollectionObjectsByName(user, coll, want)
			return err
		})
		if err != nil {
			return calendar.Collection{}, nil, davErr(err)
		}
		if sc.Seq == seq {
			return davCollection(sc), davObjects(objs), nil
		}
	}
	return b.objectsByNameView(ctx, user, coll, names)
}

// objectsByNameView is ObjectsByName in one snapshot, however many names.
func (b caldavBackend) objectsByNameView(ctx context.Context, user, coll string, names func(seq int64) []string) (calendar.Collection, []calendar.Object, error) {
	var out []calendar.Object
	c, err := b.inCollection(ctx, user, coll, func(tx store.Tx, sc *store.Collection) error {
		out = nil
		want := names(sc.Seq)
		if len(want) == 0 {
			return nil
		}
		objs, err := tx.ObjectsByName(user, coll, want)
		out = davObjects(objs)
		return err
	})
	return c, out, err
}

func (b caldavBackend) Changes(ctx context.Context, user, coll string, since int64, withData bool) (calendar.Collection, []calendar.Object, error) {
	if since != calendar.FromStart && !withData {
		return b.incrementalChanges(ctx, user, coll, since)
	}
	var out []calendar.Object
	c, err := b.inCollection(ctx, user, coll, func(tx store.Tx, sc *store.Collection) error {
		from := since
		if since == calendar.FromStart {
			from = 0
		} else if since < sc.MinSeq || since > sc.Seq {
			return calendar.ErrSyncTokenExpired
		}
		list, err := tx.Changes(user, coll, from)
		if err != nil {
			return err
		}
		out = make([]calendar.Object, 0, len(list))
		for i := range list {
			if list[i].Deleted && since == calendar.FromStart {
				continue
			}
			o := davObject(&list[i])
			if withData && !o.Deleted {
				full, err := tx.Object(user, coll, o.Name)
				if err != nil {
					return err
				}
				o.Data = full.Data
			}
			out = append(out, o)
		}
		return nil
	})
	return c, out, err
}

// incrementalChanges is the sync-collection a phone sends after its home
// poll found a changed list: the collection and its changes in one
// SELECT, so a Read (no BEGIN and ROLLBACK, no second statement).
func (b caldavBackend) incrementalChanges(ctx context.Context, user, coll string, since int64) (calendar.Collection, []calendar.Object, error) {
	var c calendar.Collection
	var out []calendar.Object
	err := b.s.st.Read(ctx, func(tx store.Tx) error {
		sc, list, err := tx.CollectionChanges(user, coll, since)
		if err != nil {
			return err
		}
		c = davCollection(sc)
		if since < sc.MinSeq || since > sc.Seq {
			return calendar.ErrSyncTokenExpired
		}
		out = davObjects(list)
		return nil
	})
	return c, out, davErr(err)
}

func (b caldavBackend) SetCollectionProps(ctx context.Context, user, coll string, edit func(*calendar.CollectionProps) bool) error {
	err := b.s.st.Update(ctx, func(tx store.Tx) error {
		c, err := tx.Collection(user, coll)
		if err != nil {
			return err
		}
		p := calendar.CollectionProps{DisplayName: c.DisplayName, Color: c.Color, Order: c.Order}
		if !edit(&p) {
			return nil
		}
		if p.DisplayName == "" {
			todos, events := render.CollectionDisplayNames(c.Project)
			p.DisplayName = events
			if c.Kind == store.KindTodos {
				p.DisplayName = todos
			}
		}
		return tx.SetCollectionProps(user, c.Name, p.DisplayName, p.Color, p.Order)
	})
	return davErr(err)
}

// PhonePut: see phonePut in phone.go for the rules.
func (b caldavBackend) PhonePut(ctx context.Context, p calendar.Put) (calendar.PutResult, error) {
	res, err := b.s.phonePut(ctx, p)
	return res, davErr(err)
}

// PhoneDelete: see phoneDelete in phone.go for the rules.
func (b caldavBackend) PhoneDelete(ctx context.Context, user, coll, name string, cond calendar.Conditions) (string, error) {
	outcome, err := b.s.phoneDelete(ctx, user, coll, name, cond)
	return outcome, davErr(err)
}

// davErr marks the store's ErrNotFound as the calendar's, keeping its
// text. The phone writes' refusals are the calendar's errors already
// (phone.go): phone writes come only from CalDAV.
func davErr(err error) error {
	if errors.Is(err, store.ErrNotFound) && !errors.Is(err, calendar.ErrNoCollection) {
		return markedErr{kind: calendar.ErrNotFound, err: err}
	}
	return err
}

// markedErr is err, also matching kind with errors.Is.
type markedErr struct{ kind, err error }

func (e markedErr) Error() string   { return e.err.Error() }
func (e markedErr) Unwrap() []error { return []error{e.kind, e.err} }

func davCollection(c *store.Collection) calendar.Collection {
	return calendar.Collection{Name: c.Name, Project: c.Project, Todos: c.Kind == store.KindTodos,
		DisplayName: c.DisplayName, Color: c.Color, Order: c.Order, Seq: c.Seq}
}

func davObject(o *store.Object) calendar.Object {
	return calendar.Object{Collection: o.Collection, Name: o.Name, ETag: o.ETag, Data: o.Data,
		Modified: o.Modified, Seq: o.Seq, Deleted: o.Deleted}
}

func davObjects(objs []store.Object) []calendar.Object {
	out := make([]calendar.Object, len(objs))
	for i := range objs {
		out[i] = davObject(&objs[i])
	}
	return out
}
