package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-ical"

	"github.com/duebridge/duebridge/calendar"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/store"
)

// Phone writes: what a CalDAV client may change, and how.
//
// A PUT of a tracker-owned VTODO is never refused for what it changed, only
// for its preconditions: iOS retries a refused write forever. Of its content
// duebridge takes the completion state (done or not, reported to the task
// system), the phone's own VALARMs and X- properties (kept per user
// and merged into every later rendering, so iOS does not switch alarms off),
// and ignores the rest, which the tracker owns (title, due date,
// description, priority, URL). A PUT that creates a new resource is a
// reminder the user made on the phone: it is stored byte for byte as that
// user's own object and never reaches a task system. A DELETE of a tracker
// task hides it for that user; a DELETE of an own reminder removes it.

// Phone writes are refused with the CalDAV handler's errors
// (calendar.ErrPrecondition, ErrReadOnly, ErrNoCollection, ErrUIDConflict,
// ErrUnsupportedComponent, ErrInvalidObject, *QuotaError): they come only
// from CalDAV.

// UIDConflictError says which resource already holds the UID.
type UIDConflictError struct {
	Collection, Name string
}

func (e *UIDConflictError) Error() string {
	return fmt.Sprintf("UID already in use by %s/%s", e.Collection, e.Name)
}

func (e *UIDConflictError) Unwrap() error { return calendar.ErrUIDConflict }

// checkConditions evaluates a request's entity-tag preconditions (RFC 9110
// §13.1) against the current resource (nil: none). If-Match uses strong
// comparison, If-None-Match weak comparison.
func checkConditions(c calendar.Conditions, cur *store.Object) error {
	if len(c.IfMatch) > 0 {
		ok := false
		for _, t := range c.IfMatch {
			if cur != nil && (t == "*" || (!strings.HasPrefix(t, "W/") && t == cur.ETag)) {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("%w: If-Match", calendar.ErrPrecondition)
		}
	}
	for _, t := range c.IfNoneMatch {
		if cur != nil && (t == "*" || strings.TrimPrefix(t, "W/") == cur.ETag) {
			return fmt.Errorf("%w: If-None-Match", calendar.ErrPrecondition)
		}
	}
	return nil
}

// phonePut applies a PUT from a user's device in one transaction: the
// completion reaches the task system's outbox exactly when it is stored.
func (s *Service) phonePut(ctx context.Context, pw calendar.Put) (calendar.PutResult, error) {
	cfg := s.Config()
	u := cfg.User(pw.User)
	if u == nil {
		return calendar.PutResult{}, fmt.Errorf("unknown user %q", pw.User)
	}
	cal := pw.Cal
	if cal == nil {
		var err error
		if cal, err = ical.NewDecoder(bytes.NewReader(pw.Data)).Decode(); err != nil {
			return calendar.PutResult{}, fmt.Errorf("%w: %v", calendar.ErrInvalidObject, err)
		}
	}
	comp, uid, err := singleComponent(cal)
	if err != nil {
		return calendar.PutResult{}, err
	}
	var res calendar.PutResult
	start := time.Now()
	err = s.st.Update(ctx, func(tx store.Tx) error {
		res = calendar.PutResult{}
		if _, err := writableList(tx, pw.User, pw.Collection); err != nil {
			return err
		}
		if comp.Name != ical.CompToDo {
			return fmt.Errorf("%w: %s (this list holds VTODO)", calendar.ErrUnsupportedComponent, comp.Name)
		}
		cur, err := tx.Object(pw.User, pw.Collection, pw.Name)
		if errors.Is(err, store.ErrNotFound) {
			cur = nil
		} else if err != nil {
			return err
		}
		if err := checkConditions(pw.Cond, cur); err != nil {
			return err
		}
		if cur != nil && cur.UID != uid {
			return fmt.Errorf("%w: the UID of %s cannot change", calendar.ErrUIDConflict, pw.Name)
		}
		if cur == nil {
			// iOS completes a reminder at the href where it last saw it; if
			// the task moved (project renamed), creating a second resource
			// with the same UID would duplicate it. Refusing makes the client
			// re-sync and find the task at its new place.
			if other, err := tx.ObjectByUID(pw.User, uid); err == nil {
				return &UIDConflictError{Collection: other.Collection, Name: other.Name}
			} else if !errors.Is(err, store.ErrNotFound) {
				return err
			}
			if render.IsTaskUID(uid) {
				// A tracker task the user hid, or one no longer assigned:
				// only the task system can bring it back.
				return fmt.Errorf("%w: %s belongs to a task-system task", calendar.ErrUIDConflict, uid)
			}
		}
		w := s.newWriter(tx, cfg)
		if cur != nil && cur.Source != "" {
			return w.phoneTaskPut(u, cur, comp, pw.Data, &res)
		}
		return w.phoneOwnPut(pw, cur, uid, &res)
	})
	s.metrics.StoreLatency.WithLabelValues("phone_put").Observe(time.Since(start).Seconds())
	if err != nil {
		return calendar.PutResult{}, fmt.Errorf("store phone write %s/%s/%s: %w", pw.User, pw.Collection, pw.Name, err)
	}
	return res, nil
}

// singleComponent checks RFC 4791 §4.1 (one component type apart from
// VTIMEZONE, one UID, no METHOD) and returns the first component.
func singleComponent(cal *ical.Calendar) (*ical.Component, string, error) {
	if cal.Props.Get(ical.PropMethod) != nil {
		return nil, "", fmt.Errorf("%w: METHOD is not allowed in a calendar collection", calendar.ErrInvalidObject)
	}
	var first *ical.Component
	uid := ""
	for _, c := range cal.Children {
		if c.Name == ical.CompTimezone {
			continue
		}
		cuid, err := c.Props.Text(ical.PropUID)
		if err != nil || cuid == "" {
			return nil, "", fmt.Errorf("%w: %s without UID", calendar.ErrInvalidObject, c.Name)
		}
		if first == nil {
			first, uid = c, cuid
			continue
		}
		if c.Name != first.Name {
			return nil, "", fmt.Errorf("%w: both %s and %s", calendar.ErrInvalidObject, first.Name, c.Name)
		}
		if cuid != uid {
			return nil, "", fmt.Errorf("%w: more than one UID", calendar.ErrInvalidObject)
		}
	}
	if first == nil {
		return nil, "", fmt.Errorf("%w: no component", calendar.ErrInvalidObject)
	}
	if len(uid) > 1024 {
		return nil, "", fmt.Errorf("%w: UID longer than 1024 bytes", calendar.ErrInvalidObject)
	}
	return first, uid, nil
}

// phoneOwnPut stores a reminder the user made on a device, as sent.
func (w *writer) phoneOwnPut(pw calendar.Put, cur *store.Object, uid string, res *calendar.PutResult) error {
	etag := render.ETag(pw.Data)
	res.ETag, res.Verbatim, res.Created = etag, true, cur == nil
	if cur != nil && cur.ETag == etag {
		res.Outcome = "unchanged"
		return nil // same bytes: keep ctag and sync token still
	}
	if err := w.ownBudget(pw, cur); err != nil {
		return err
	}
	res.Outcome = "updated"
	if cur == nil {
		res.Outcome = "created"
	}
	data := append([]byte(nil), pw.Data...)
	return w.tx.PutObject(&store.Object{User: pw.User, Collection: pw.Collection, Name: pw.Name, UID: uid,
		ETag: etag, Data: data})
}

// ownBudget checks, inside the write's transaction, that storing pw (in
// place of cur, if any) keeps the user within the own-reminder budgets: a
// new object must fit under the count, and the bytes may not grow past the
// limit (an update that shrinks or keeps them is always fine, so a user
// over a lowered limit can still edit).
func (w *writer) ownBudget(pw calendar.Put, cur *store.Object) error {
	l := w.cfg.Limits
	count, size, err := w.tx.OwnUsage(pw.User)
	if err != nil {
		return err
	}
	var qe *calendar.QuotaError
	grow := int64(len(pw.Data))
	if cur != nil {
		grow -= int64(len(cur.Data))
	}
	switch {
	case cur == nil && l.OwnRemindersPerUser > 0 && count >= int64(l.OwnRemindersPerUser):
		qe = &calendar.QuotaError{Limit: "own_reminders", Max: int64(l.OwnRemindersPerUser),
			Detail: fmt.Sprintf("at most %d own reminders per user (limits.own_reminders_per_user)", l.OwnRemindersPerUser)}
	case grow > 0 && l.OwnReminderBytesPerUser > 0 && size+grow > l.OwnReminderBytesPerUser:
		qe = &calendar.QuotaError{Limit: "own_reminder_bytes", Max: l.OwnReminderBytesPerUser,
			Detail: fmt.Sprintf("own reminders are limited to %d bytes per user (limits.own_reminder_bytes_per_user)", l.OwnReminderBytesPerUser)}
	}
	if qe != nil {
		return qe // the CalDAV handler counts it by qe.Limit
	}
	return nil
}

// phoneTaskPut applies a device's PUT of a tracker task's VTODO.
func (w *writer) phoneTaskPut(u *config.User, cur *store.Object, comp *ical.Component, data []byte, res *calendar.PutResult) error {
	t, err := w.tx.Task(cur.Source, cur.TaskID)
	if err != nil {
		return fmt.Errorf("task of %s/%s: %w", cur.Collection, cur.Name, err)
	}
	ut, err := w.tx.UserTask(u.Name, t.Source, t.ID)
	if errors.Is(err, store.ErrNotFound) {
		ut = &store.UserTask{User: u.Name, Source: t.Source, TaskID: t.ID}
	} else if err != nil {
		return err
	}
	old, err := render.ParsePhoneState(ut.Extra)
	if err != nil {
		w.s.log.Warn("replacing unreadable phone state", "user", u.Name, "task", t.Source+"/"+t.ID, "err", err)
		old = render.PhoneState{}
	}
	next, dropped, err := phoneStateOf(comp, ours(t, w.cfg.LeadTimesFor(u, w.cfg.Source(t.Source))), w.cfg.Limits.ClientPropsBytes)
	if err != nil {
		return err
	}
	if dropped > 0 {
		w.s.metrics.ClientPropsDropped.Add(float64(dropped))
		w.s.log.Info("client properties over limits.client_props_bytes not kept", "user", u.Name,
			"task", t.Source+"/"+t.ID, "dropped", dropped)
	}
	next.Bumps = old.Bumps
	stateChanged := next.Alarms != old.Alarms || !slices.Equal(next.Props, old.Props) || !maps.Equal(next.Acked, old.Acked)
	done, when, known := completionOf(comp)
	completionChanged := known && done != (t.Status == "done") && t.Status != "cancelled"

	res.Outcome = "unchanged"
	if stateChanged {
		next.Bumps++ // SEQUENCE rises with every change the phone made
		ut.Extra = next.Encode()
		if err := w.tx.PutUserTask(ut); err != nil {
			return err
		}
		res.Outcome = "phone-state"
	}
	switch {
	case completionChanged:
		if err := w.complete(u.Name, t, done, when); err != nil {
			return err
		}
		res.Outcome = "reopened"
		if done {
			res.Outcome = "completed"
		}
	case stateChanged:
		if err := w.syncObjects(u, t, slices.Contains(t.Assignees, u.Name), false); err != nil {
			return err
		}
	}
	stored, err := w.tx.Object(u.Name, cur.Collection, cur.Name)
	if err != nil {
		return fmt.Errorf("re-read %s/%s: %w", cur.Collection, cur.Name, err)
	}
	if stored.ETag == cur.ETag && trackerFieldsChanged(comp, cur.Data, u.Location) {
		// The client changed a field the task system owns and we kept ours:
		// what it must fetch again has to differ from what it had, or a
		// client that compares ETags (vdirsyncer, Thunderbird) keeps its
		// own edit for good. A phone bump raises SEQUENCE and so the render.ETag.
		next.Bumps++
		ut.Extra = next.Encode()
		if err := w.tx.PutUserTask(ut); err != nil {
			return err
		}
		if err := w.syncObjects(u, t, slices.Contains(t.Assignees, u.Name), false); err != nil {
			return err
		}
		if stored, err = w.tx.Object(u.Name, cur.Collection, cur.Name); err != nil {
			return fmt.Errorf("re-read %s/%s: %w", cur.Collection, cur.Name, err)
		}
		if res.Outcome == "unchanged" {
			res.Outcome = "overridden"
		}
	}
	res.ETag = stored.ETag
	// RFC 4791 §5.3.4: an render.ETag in the answer tells the client its copy is
	// the stored one, so only when the stored bytes are exactly the body.
	res.Verbatim = bytes.Equal(stored.Data, data)
	return nil
}

// completionOf reads whether a VTODO says done. STATUS decides when present
// (an un-completion may keep PERCENT-COMPLETE:100 from our rendering);
// without it, COMPLETED or PERCENT-COMPLETE:100 mean done (iOS 5 wrote only
// the percentage). known is false for STATUS:CANCELLED, which a user cannot
// set on a task-system task. when is the COMPLETED time, if any.
func completionOf(c *ical.Component) (done bool, when time.Time, known bool) {
	if p := c.Props.Get(ical.PropCompleted); p != nil {
		if t, err := p.DateTime(time.UTC); err == nil {
			when = t
		}
	}
	status, _ := c.Props.Text(ical.PropStatus)
	switch strings.ToUpper(strings.TrimSpace(status)) {
	case "COMPLETED":
		return true, when, true
	case "NEEDS-ACTION", "IN-PROCESS":
		return false, when, true
	case "CANCELLED":
		return false, when, false
	}
	if c.Props.Get(ical.PropCompleted) != nil {
		return true, when, true
	}
	if p := c.Props.Get(ical.PropPercentComplete); p != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(p.Value)); err == nil {
			return n >= 100, when, true
		}
	}
	return false, when, true
}

// alarmSet recognises duebridge's own VALARMs in what a phone sends back.
type alarmSet map[string]bool

// ours returns the UIDs of the alarms duebridge renders for t: a phone may
// drop our X-DUEBRIDGE-LEAD marker, but iOS keeps alarm UIDs.
func ours(t *store.Task, leads []time.Duration) alarmSet {
	s := alarmSet{}
	for _, l := range leads {
		s[render.AlarmUID(t, l)] = true
	}
	return s
}

func (s alarmSet) has(a *ical.Component) bool {
	if a.Props.Get("X-DUEBRIDGE-LEAD") != nil {
		return true
	}
	for _, name := range []string{ical.PropUID, "X-WR-ALARMUID"} {
		if p := a.Props.Get(name); p != nil && s[p.Value] {
			return true
		}
	}
	return false
}

// phoneStateOf extracts what duebridge keeps of a device's VTODO: VALARMs
// that are neither ours nor Apple's ACTION:NONE placeholder, and every
// client-private X- property (Apple's, Mozilla's X-MOZ-LASTACK and
// X-MOZ-GENERATION, Evolution's), except duebridge's own. The properties
// kept are bounded by maxProps bytes; dropped counts the ones left out.
// The form is canonical (go-ical sorts properties), so equal content
// compares equal.
func phoneStateOf(c *ical.Component, ourAlarms alarmSet, maxProps int64) (_ render.PhoneState, dropped int, _ error) {
	holder := ical.NewComponent(ical.CompToDo)
	holder.Props.SetText(ical.PropUID, "x")
	holder.Props.SetDateTime(ical.PropDateTimeStamp, time.Unix(0, 0).UTC())
	for name, props := range c.Props {
		if !strings.HasPrefix(name, "X-") || strings.HasPrefix(name, "X-DUEBRIDGE-") {
			continue
		}
		one := ical.NewComponent(ical.CompAlarm) // any component: only the property is tried
		one.Props[name] = props
		if !encodable(one) {
			dropped += len(props) // one odd property must not refuse the write (iOS retries for ever)
			continue
		}
		holder.Props[name] = props
	}
	var acked map[string]string
	for _, a := range c.Children {
		if a.Name == ical.CompAlarm && ourAlarms.has(a) {
			// Keep only the dismissal of our own alarms; we render the rest.
			ack, trig := a.Props.Get("ACKNOWLEDGED"), a.Props.Get(ical.PropTrigger)
			if ack != nil && trig != nil {
				uid := a.Props.Get(ical.PropUID)
				if uid == nil {
					uid = a.Props.Get("X-WR-ALARMUID")
				}
				if uid != nil {
					if acked == nil {
						acked = map[string]string{}
					}
					acked[render.AckKey(uid.Value, trig.Value)] = ack.Value
				}
			}
			continue
		}
		if a.Name != ical.CompAlarm {
			continue
		}
		if action, _ := a.Props.Text(ical.PropAction); strings.EqualFold(action, "NONE") {
			continue
		}
		if !encodable(a) {
			continue // keeping the rest beats refusing a completion over one odd alarm
		}
		holder.Children = append(holder.Children, a)
	}
	cal := ical.NewCalendar()
	cal.Props.SetText(ical.PropVersion, "2.0")
	cal.Props.SetText(ical.PropProductID, render.ProdID)
	cal.Children = append(cal.Children, holder)
	var buf bytes.Buffer
	if err := ical.NewEncoder(&buf).Encode(cal); err != nil {
		return render.PhoneState{}, 0, fmt.Errorf("%w: %v", calendar.ErrInvalidObject, err)
	}
	p := render.PhoneState{Acked: acked}
	var propBytes int64
	var alarms strings.Builder
	depth := 0 // 1 in VCALENDAR, 2 in the VTODO, 3 in a VALARM
	for _, line := range strings.Split(buf.String(), "\r\n") {
		switch {
		case line == "":
		case strings.HasPrefix(line, "BEGIN:"):
			depth++
			if depth >= 3 {
				alarms.WriteString(line + "\r\n")
			}
		case strings.HasPrefix(line, "END:"):
			if depth >= 3 {
				alarms.WriteString(line + "\r\n")
			}
			depth--
		case depth >= 3:
			alarms.WriteString(line + "\r\n")
		case depth == 2 && !strings.HasPrefix(line, "UID:") && !strings.HasPrefix(line, "DTSTAMP"):
			if propBytes+int64(len(line)) > maxProps {
				dropped++
				continue
			}
			propBytes += int64(len(line))
			p.Props = append(p.Props, line)
		}
	}
	p.Alarms = alarms.String()
	return p, dropped, nil
}

// encodable reports whether go-ical can write a component back out (it
// refuses, for instance, a parameter value with a double quote).
func encodable(c *ical.Component) bool {
	holder := ical.NewComponent(ical.CompToDo)
	holder.Props.SetText(ical.PropUID, "x")
	holder.Props.SetDateTime(ical.PropDateTimeStamp, time.Unix(0, 0).UTC())
	holder.Children = []*ical.Component{c}
	cal := ical.NewCalendar()
	cal.Props.SetText(ical.PropVersion, "2.0")
	cal.Props.SetText(ical.PropProductID, render.ProdID)
	cal.Children = []*ical.Component{holder}
	var buf bytes.Buffer
	return ical.NewEncoder(&buf).Encode(cal) == nil
}

// trackerFieldsChanged reports whether the device's VTODO differs from our
// last rendering (rendered, the stored bytes) in a field the task system
// owns, which duebridge then kept.
func trackerFieldsChanged(c *ical.Component, rendered []byte, loc *time.Location) bool {
	cal, err := ical.NewDecoder(bytes.NewReader(rendered)).Decode()
	if err != nil || len(cal.Children) == 0 {
		return true
	}
	ours := cal.Children[0]
	if priorityClass(c.Props.Get(ical.PropPriority)) != priorityClass(ours.Props.Get(ical.PropPriority)) {
		return true
	}
	for _, name := range []string{ical.PropSummary, ical.PropDescription, ical.PropURL} {
		a, b := c.Props.Get(name), ours.Props.Get(name)
		if (a == nil) != (b == nil) {
			// iOS sends an empty DESCRIPTION where there was none.
			if name == ical.PropDescription && (a == nil || a.Value == "") && (b == nil || b.Value == "") {
				continue
			}
			return true
		}
		if a != nil && textValue(a) != textValue(b) {
			return true
		}
	}
	for _, name := range []string{ical.PropDue, ical.PropDateTimeStart} {
		a, b := c.Props.Get(name), ours.Props.Get(name)
		if (a == nil) != (b == nil) {
			return true
		}
		if a != nil && !sameInstant(a, b, loc) {
			return true
		}
	}
	return false
}

// priorityClass maps PRIORITY to what iOS shows (RFC 5545 §3.8.1.9 and
// priorityValue: urgent 1, high 5, low 9, normal none): a client writing
// another value of the same class (2 where we wrote 1, 0 where we wrote
// none) changed nothing.
func priorityClass(p *ical.Prop) int {
	if p == nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(p.Value))
	switch {
	case err != nil || n <= 0 || n > 9:
		return 0
	case n <= 4:
		return 1
	case n == 5:
		return 2
	}
	return 3
}

func textValue(p *ical.Prop) string {
	if s, err := p.Text(); err == nil {
		return strings.TrimSpace(s)
	}
	return p.Value
}

// sameInstant compares two date or date-time properties: dates by day,
// date-times as instants (a TZID the host does not know counts as UTC;
// floating times are read in the user's zone).
func sameInstant(a, b *ical.Prop, loc *time.Location) bool {
	aDate, bDate := isDate(a), isDate(b)
	if aDate != bDate {
		return false
	}
	ta, errA := propTime(a, loc)
	tb, errB := propTime(b, loc)
	if errA != nil || errB != nil {
		return a.Value == b.Value
	}
	if aDate {
		return ta.Format("20060102") == tb.Format("20060102")
	}
	return ta.Equal(tb)
}

func isDate(p *ical.Prop) bool {
	return p.ValueType() == ical.ValueDate || len(strings.TrimSpace(p.Value)) == 8
}

// propTime parses a date or date-time property: dates and floating times in
// loc, a TZID the host's time zone database does not know as UTC.
func propTime(p *ical.Prop, loc *time.Location) (time.Time, error) {
	if loc == nil {
		loc = time.UTC
	}
	v := strings.TrimSpace(p.Value)
	switch {
	case isDate(p):
		return time.ParseInLocation("20060102", v, loc)
	case strings.HasSuffix(v, "Z"):
		return time.Parse("20060102T150405Z", v)
	}
	if tzid := p.Params.Get(ical.ParamTimezoneID); tzid != "" {
		if l, err := time.LoadLocation(tzid); err == nil {
			loc = l
		} else {
			loc = time.UTC
		}
	}
	return time.ParseInLocation("20060102T150405", v, loc)
}

// phoneDelete applies a DELETE from a user's device: an own reminder is
// removed; a task-system task is hidden for that user (its reminder and
// deadline leave their lists) until the task system assigns it anew.
func (s *Service) phoneDelete(ctx context.Context, user, collection, name string, cond calendar.Conditions) (outcome string, err error) {
	cfg := s.Config()
	u := cfg.User(user)
	if u == nil {
		return "", fmt.Errorf("unknown user %q", user)
	}
	start := time.Now()
	err = s.st.Update(ctx, func(tx store.Tx) error {
		if _, err := writableList(tx, user, collection); err != nil {
			return err
		}
		cur, err := tx.Object(user, collection, name)
		if err != nil {
			return err // store.ErrNotFound included
		}
		if err := checkConditions(cond, cur); err != nil {
			return err
		}
		if cur.Source == "" {
			outcome = "deleted"
			return tx.DeleteObject(user, collection, name)
		}
		t, err := tx.Task(cur.Source, cur.TaskID)
		if err != nil {
			return fmt.Errorf("task of %s/%s: %w", collection, name, err)
		}
		ut, err := tx.UserTask(user, t.Source, t.ID)
		if errors.Is(err, store.ErrNotFound) {
			ut = &store.UserTask{User: user, Source: t.Source, TaskID: t.ID}
		} else if err != nil {
			return err
		}
		ut.Hidden = true
		if err := tx.PutUserTask(ut); err != nil {
			return err
		}
		outcome = "hidden"
		return s.newWriter(tx, cfg).syncObjects(u, t, slices.Contains(t.Assignees, user), false)
	})
	s.metrics.StoreLatency.WithLabelValues("phone_delete").Observe(time.Since(start).Seconds())
	if err != nil {
		return "", fmt.Errorf("store phone delete %s/%s/%s: %w", user, collection, name, err)
	}
	return outcome, nil
}

// writableList returns a user's collection if the phone may write to it: a
// Reminders list, not a deadlines calendar.
func writableList(tx store.Tx, user, name string) (*store.Collection, error) {
	coll, err := tx.Collection(user, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, calendar.ErrNoCollection
	} else if err != nil {
		return nil, err
	}
	if coll.Kind != store.KindTodos {
		return nil, fmt.Errorf("%w: %s holds deadlines from the task system", calendar.ErrReadOnly, coll.DisplayName)
	}
	return coll, nil
}
