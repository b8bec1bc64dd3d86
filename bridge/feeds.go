package bridge

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/store"
	"github.com/emersion/go-ical"
)

// Calendar feed tokens. The store keeps only a keyed hash of each token
// (HMAC-SHA256 under a random server key), so the token itself never sits
// in the database, its dumps or query logs. Each user has at most one live
// token; issuing a new one revokes the old.
const (
	kvFeedKey   = "feed.key"    // hex HMAC key, made on first use
	kvFeedToken = "feed.token." // + hex(HMAC(token)) → user name; "" = revoked
	kvFeedUser  = "feed.user."  // + user name → hex(HMAC(token)) of the live token
)

// FeedTokenBytes is the randomness of a feed token (256 bits).
const FeedTokenBytes = 32

// IssueFeedToken makes a new feed token for user, revoking the previous
// one, and returns it. Only its keyed hash is stored.
func (s *Service) IssueFeedToken(ctx context.Context, user string) (string, error) {
	if s.Config().User(user) == nil {
		return "", fmt.Errorf("issue feed token: unknown user %q", user)
	}
	raw := make([]byte, FeedTokenBytes)
	rand.Read(raw)
	token := base64.RawURLEncoding.EncodeToString(raw)
	err := s.st.Update(ctx, func(tx store.Tx) error {
		key, err := feedKey(tx, true)
		if err != nil {
			return err
		}
		if err := revokeFeed(tx, user); err != nil {
			return err
		}
		h := feedHash(key, token)
		if err := tx.Set(kvFeedToken+h, user); err != nil {
			return err
		}
		return tx.Set(kvFeedUser+user, h)
	})
	if err != nil {
		return "", fmt.Errorf("issue feed token for %s: %w", user, err)
	}
	return token, nil
}

// RevokeFeedToken revokes user's feed token; revoked reports whether there
// was a live one.
func (s *Service) RevokeFeedToken(ctx context.Context, user string) (revoked bool, err error) {
	err = s.st.Update(ctx, func(tx store.Tx) error {
		h, err := tx.Get(kvFeedUser + user)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		revoked = h != ""
		return revokeFeed(tx, user)
	})
	if err != nil {
		return false, fmt.Errorf("revoke feed token of %s: %w", user, err)
	}
	return revoked, nil
}

// HasFeedToken reports whether user has a live feed token (the token
// itself cannot be shown again: only its hash is stored).
func (s *Service) HasFeedToken(ctx context.Context, user string) (bool, error) {
	var live bool
	err := s.st.View(ctx, func(tx store.Tx) error {
		h, err := tx.Get(kvFeedUser + user)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		live = h != ""
		return err
	})
	if err != nil {
		return false, fmt.Errorf("look up feed token of %s: %w", user, err)
	}
	return live, nil
}

func revokeFeed(tx store.Tx, user string) error {
	h, err := tx.Get(kvFeedUser + user)
	if errors.Is(err, store.ErrNotFound) || (err == nil && h == "") {
		return nil
	}
	if err != nil {
		return err
	}
	// The kv table has no delete; an empty value is a revoked token.
	if err := tx.Set(kvFeedToken+h, ""); err != nil {
		return err
	}
	return tx.Set(kvFeedUser+user, "")
}

func feedKey(tx store.Tx, create bool) ([]byte, error) {
	v, err := tx.Get(kvFeedKey)
	if errors.Is(err, store.ErrNotFound) && create {
		k := make([]byte, 32)
		rand.Read(k)
		return k, tx.Set(kvFeedKey, hex.EncodeToString(k))
	}
	if err != nil {
		return nil, err
	}
	return hex.DecodeString(v)
}

func feedHash(key []byte, token string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(token))
	return hex.EncodeToString(m.Sum(nil))
}

// FeedOwner returns the user whose live feed token this is. The lookup is by
// keyed hash, so its timing says nothing about stored tokens.
func (s *Service) FeedOwner(ctx context.Context, token string) (user string, ok bool, err error) {
	err = s.st.View(ctx, func(tx store.Tx) error {
		key, err := feedKey(tx, false)
		if errors.Is(err, store.ErrNotFound) {
			return nil // no token was ever issued
		}
		if err != nil {
			return err
		}
		user, err = tx.Get(kvFeedToken + feedHash(key, token))
		if errors.Is(err, store.ErrNotFound) {
			user = ""
			return nil
		}
		return err
	})
	if err != nil {
		return "", false, fmt.Errorf("look up feed token: %w", err)
	}
	if user == "" || s.Config().User(user) == nil {
		return "", false, nil
	}
	return user, true, nil
}

// feedCollections are the user's deadline collections of project ("" =
// all), and the Reminders lists of the same projects: the feed's alarms
// come from those, so their revisions are part of the feed's version.
func feedCollections(tx store.Tx, user, project string) (events, todos []store.Collection, err error) {
	cs, err := tx.Collections(user)
	if err != nil {
		return nil, nil, err
	}
	for _, c := range cs {
		if project != "" && c.Project != project {
			continue
		}
		switch c.Kind {
		case store.KindEvents:
			events = append(events, c)
		case store.KindTodos:
			todos = append(todos, c)
		}
	}
	return events, todos, nil
}

// feedVersion changes whenever an object in one of cs changes: every write
// advances its collection's revision.
func feedVersion(events, todos []store.Collection) string {
	var b strings.Builder
	for _, c := range append(slices.Clip(events), todos...) {
		b.WriteString(c.Name)
		b.WriteByte('=')
		b.WriteString(strconv.FormatInt(c.Seq, 10))
		b.WriteByte(';')
	}
	return b.String()
}

// FeedVersion returns the version of user's feed: one read of the
// collection list, no objects.
func (s *Service) FeedVersion(ctx context.Context, user, project string) (string, error) {
	var v string
	err := s.st.View(ctx, func(tx store.Tx) error {
		events, todos, err := feedCollections(tx, user, project)
		v = feedVersion(events, todos)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("read feed version of %s: %w", user, err)
	}
	return v, nil
}

// FeedObjects returns the iCalendar data of user's deadlines (of project,
// "" = all) with the version they were read at and the latest change.
//
// On CalDAV only the reminder alerts (one alerting object per task), but a
// feed subscriber has no reminder: each deadline carries the alarms of the
// user's reminder of the same task, so the feed alerts as configured
// (lead times, notify: mail, done tasks, a dismissed alarm) and no more.
func (s *Service) FeedObjects(ctx context.Context, user, project string) (objs [][]byte, version string, modified time.Time, err error) {
	err = s.st.View(ctx, func(tx store.Tx) error {
		objs, modified = nil, time.Time{}
		events, todos, err := feedCollections(tx, user, project)
		if err != nil {
			return err
		}
		version = feedVersion(events, todos)
		todosOf := map[string]string{}
		for _, c := range todos {
			todosOf[c.Project] = c.Name
		}
		for _, c := range events {
			os, err := tx.Objects(user, c.Name, true)
			if err != nil {
				return err
			}
			for _, o := range os {
				data, err := withReminderAlarms(tx, user, todosOf[c.Project], o.Name, o.Data)
				if err != nil {
					return err
				}
				objs = append(objs, data)
				if o.Modified.After(modified) {
					modified = o.Modified
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, "", time.Time{}, fmt.Errorf("read feed of %s: %w", user, err)
	}
	return objs, version, modified, nil
}

// withReminderAlarms returns event with the VALARMs of the reminder named
// name in the list todos; event itself when there is none (the user hid
// the reminder, notify: mail, a closed task).
func withReminderAlarms(tx store.Tx, user, todos, name string, event []byte) ([]byte, error) {
	if todos == "" {
		return event, nil
	}
	todo, err := tx.Object(user, todos, name)
	if errors.Is(err, store.ErrNotFound) {
		return event, nil
	}
	if err != nil {
		return nil, err
	}
	var alarms []*ical.Component
	if tc, err := ical.NewDecoder(bytes.NewReader(todo.Data)).Decode(); err == nil {
		for _, c := range tc.Children {
			if c.Name == ical.CompToDo {
				for _, a := range c.Children {
					if a.Name == ical.CompAlarm {
						alarms = append(alarms, a)
					}
				}
			}
		}
	}
	if len(alarms) == 0 {
		return event, nil
	}
	ec, err := ical.NewDecoder(bytes.NewReader(event)).Decode()
	if err != nil {
		return event, nil // stored by us; serve it as it is rather than fail the feed
	}
	for _, c := range ec.Children {
		if c.Name == ical.CompEvent {
			c.Children = append(c.Children, alarms...)
			var buf bytes.Buffer
			if err := ical.NewEncoder(&buf).Encode(ec); err != nil {
				return event, nil
			}
			return render.Fold(buf.Bytes()), nil
		}
	}
	return event, nil
}
