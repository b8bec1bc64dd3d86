package calendar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/emersion/go-ical"
	"github.com/emersion/go-webdav"
	"github.com/emersion/go-webdav/caldav"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/store"
)

// backend is the store-backed caldav.Backend behind go-webdav's handler.
// The wrapper sends it PUT, DELETE, MKCOL, COPY and MOVE (go-webdav parses
// the iCalendar body, checks its type and writes the 201 with ETag and
// Location); the read methods complete the contract over the same store
// queries the wrapper uses, for any request go-webdav answers itself.
type backend struct {
	h *Handler
}

var _ caldav.Backend = (*backend)(nil)

var errNoRequest = errors.New("caldav backend called without an authenticated request")

func (b *backend) request(ctx context.Context) (*request, error) {
	req, ok := requestFrom(ctx)
	if !ok {
		return nil, errNoRequest
	}
	return req, nil
}

// owned resolves a path go-webdav passes (already unescaped) to one of the
// user's targets; anything else is 404, like in the wrapper.
func (b *backend) owned(ctx context.Context, path string, want kind) (*request, target, error) {
	req, err := b.request(ctx)
	if err != nil {
		return nil, target{}, err
	}
	t := req.target
	if path != t.href() {
		t = parseDecodedTarget(path)
	}
	if t.kind != want || t.user != req.user.Name {
		return nil, target{}, webdav.NewHTTPError(http.StatusNotFound, fmt.Errorf("no %s", path))
	}
	return req, t, nil
}

func (b *backend) CurrentUserPrincipal(ctx context.Context) (string, error) {
	req, err := b.request(ctx)
	if err != nil {
		return "", err
	}
	return principalHref(req.user.Name), nil
}

func (b *backend) CalendarHomeSetPath(ctx context.Context) (string, error) {
	req, err := b.request(ctx)
	if err != nil {
		return "", err
	}
	return homeHref(req.user.Name), nil
}

// CreateCalendar refuses: lists and calendars come from the task system's
// projects, and a list the bridge would not fill would only confuse.
func (b *backend) CreateCalendar(ctx context.Context, cal *caldav.Calendar) error {
	b.h.writes.WithLabelValues("refused-403").Inc()
	return webdav.NewHTTPError(http.StatusForbidden, errors.New("calendars and lists come from the task system"))
}

func (b *backend) calendar(req *request, c *store.Collection) caldav.Calendar {
	return caldav.Calendar{Path: collHref(req.user.Name, c.Name), Name: c.DisplayName, Description: c.Project,
		MaxResourceSize: b.h.svc.Config().Limits.ICalObjectBytes, SupportedComponentSet: []string{component(c)}}
}

func (b *backend) ListCalendars(ctx context.Context) ([]caldav.Calendar, error) {
	req, err := b.request(ctx)
	if err != nil {
		return nil, err
	}
	var colls []store.Collection
	err = b.h.svc.Store().View(ctx, func(tx store.Tx) error {
		colls, err = tx.Collections(req.user.Name)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]caldav.Calendar, len(colls))
	for i := range colls {
		out[i] = b.calendar(req, &colls[i])
	}
	return out, nil
}

func (b *backend) GetCalendar(ctx context.Context, path string) (*caldav.Calendar, error) {
	req, t, err := b.owned(ctx, path, kindCollection)
	if err != nil {
		return nil, err
	}
	var c *store.Collection
	err = b.h.svc.Store().View(ctx, func(tx store.Tx) error {
		c, err = tx.Collection(req.user.Name, t.coll)
		return err
	})
	if err != nil {
		return nil, notFound(err)
	}
	cal := b.calendar(req, c)
	return &cal, nil
}

// calendarObject decodes a stored object for go-webdav.
func calendarObject(user string, o *store.Object) (*caldav.CalendarObject, error) {
	cal, err := ical.NewDecoder(bytes.NewReader(o.Data)).Decode()
	if err != nil {
		return nil, fmt.Errorf("decode stored %s/%s/%s: %w", user, o.Collection, o.Name, err)
	}
	return &caldav.CalendarObject{Path: objHref(user, o.Collection, o.Name), ModTime: o.Modified,
		ContentLength: int64(len(o.Data)), ETag: strings.Trim(o.ETag, `"`), Data: cal}, nil
}

func (b *backend) GetCalendarObject(ctx context.Context, path string, _ *caldav.CalendarCompRequest) (*caldav.CalendarObject, error) {
	req, t, err := b.owned(ctx, path, kindObject)
	if err != nil {
		return nil, err
	}
	var o *store.Object
	err = b.h.svc.Store().View(ctx, func(tx store.Tx) error {
		o, err = tx.Object(req.user.Name, t.coll, t.name)
		return err
	})
	if err != nil {
		return nil, notFound(err)
	}
	return calendarObject(req.user.Name, o)
}

func (b *backend) ListCalendarObjects(ctx context.Context, path string, _ *caldav.CalendarCompRequest) ([]caldav.CalendarObject, error) {
	req, t, err := b.owned(ctx, path, kindCollection)
	if err != nil {
		return nil, err
	}
	var objs []store.Object
	err = b.h.svc.Store().View(ctx, func(tx store.Tx) error {
		if _, err := tx.Collection(req.user.Name, t.coll); err != nil {
			return err
		}
		objs, err = tx.Objects(req.user.Name, t.coll, true)
		return err
	})
	if err != nil {
		return nil, notFound(err)
	}
	out := make([]caldav.CalendarObject, 0, len(objs))
	for i := range objs {
		co, err := calendarObject(req.user.Name, &objs[i])
		if err != nil {
			return nil, err
		}
		out = append(out, *co)
	}
	return out, nil
}

func (b *backend) QueryCalendarObjects(ctx context.Context, path string, query *caldav.CalendarQuery) ([]caldav.CalendarObject, error) {
	all, err := b.ListCalendarObjects(ctx, path, nil)
	if err != nil || query == nil {
		return all, err
	}
	req, _ := b.request(ctx)
	f := fromCaldavFilter(query.CompFilter)
	out := all[:0]
	steps := RequestRecurrenceSteps
	for _, co := range all {
		ev := b.h.evaluation(ctx, req.user.Location, &steps)
		ok := f.matchCalendar(co.Data, ev)
		b.h.evaluated(ev, req.user.Name, "", co.Path)
		if ok {
			out = append(out, co)
		}
	}
	return out, nil
}

// fromCaldavFilter converts go-webdav's filter type to ours.
func fromCaldavFilter(cf caldav.CompFilter) compFilter {
	f := compFilter{name: strings.ToUpper(cf.Name), notDefined: cf.IsNotDefined}
	if !cf.Start.IsZero() || !cf.End.IsZero() {
		f.tr = &timeRange{start: cf.Start, end: cf.End}
	}
	for _, p := range cf.Props {
		pf := propFilter{name: strings.ToUpper(p.Name), notDefined: p.IsNotDefined}
		if !p.Start.IsZero() || !p.End.IsZero() {
			pf.tr = &timeRange{start: p.Start, end: p.End}
		}
		if p.TextMatch != nil {
			pf.text = &textMatch{text: p.TextMatch.Text, negate: p.TextMatch.NegateCondition}
		}
		for _, pa := range p.ParamFilter {
			paf := paramFilter{name: strings.ToUpper(pa.Name), notDefined: pa.IsNotDefined}
			if pa.TextMatch != nil {
				paf.text = &textMatch{text: pa.TextMatch.Text, negate: pa.TextMatch.NegateCondition}
			}
			pf.params = append(pf.params, paf)
		}
		f.props = append(f.props, pf)
	}
	for _, c := range cf.Comps {
		f.comps = append(f.comps, fromCaldavFilter(c))
	}
	return f
}

// PutCalendarObject applies a device's PUT (bridge.PhonePut has the rules).
// The ETag (and Last-Modified) go back only when the stored object carries
// what the client sent; when duebridge kept tracker-owned fields the client had changed, it
// is left out so the client fetches the object again (RFC 4791 §5.3.4).
func (b *backend) PutCalendarObject(ctx context.Context, path string, cal *ical.Calendar, _ *caldav.PutCalendarObjectOptions) (*caldav.CalendarObject, error) {
	req, t, err := b.owned(ctx, path, kindObject)
	if err != nil {
		return nil, err
	}
	res, err := b.h.svc.PhonePut(ctx, bridge.PhoneWrite{User: req.user.Name, Collection: t.coll, Name: t.name,
		Data: req.body, Cal: cal, Cond: req.cond})
	if err != nil {
		return nil, b.writeError(ctx, "PUT", t, req, err)
	}
	b.h.writes.WithLabelValues(res.Outcome).Inc()
	b.h.log.Info("device write", "method", "PUT", "user", req.user.Name, "collection", t.coll, "name", t.name,
		"outcome", res.Outcome, "verbatim", res.Verbatim, "ua", req.ua)
	req.updated = !res.Created
	co := &caldav.CalendarObject{Path: t.href()}
	if res.Verbatim {
		// Validators describe the stored representation; when it is not
		// what the client sent, neither ETag nor Last-Modified goes back,
		// so the client fetches the object again.
		co.ETag = strings.Trim(res.ETag, `"`)
		co.ModTime = b.h.svc.Now()
	}
	return co, nil
}

// DeleteCalendarObject applies a device's DELETE: an own reminder goes, a
// task-system task is hidden for this user (bridge.PhoneDelete).
func (b *backend) DeleteCalendarObject(ctx context.Context, path string) error {
	req, t, err := b.owned(ctx, path, kindObject)
	if err != nil {
		return err
	}
	outcome, err := b.h.svc.PhoneDelete(ctx, req.user.Name, t.coll, t.name, req.cond)
	if err != nil {
		return b.writeError(ctx, "DELETE", t, req, err)
	}
	b.h.writes.WithLabelValues(outcome).Inc()
	b.h.log.Info("device write", "method", "DELETE", "user", req.user.Name, "collection", t.coll, "name", t.name,
		"outcome", outcome, "ua", req.ua)
	return nil
}

// writeError maps the bridge's refusals to HTTP answers and logs them.
func (b *backend) writeError(ctx context.Context, method string, t target, req *request, err error) error {
	var code int
	var out error
	switch {
	case errors.Is(err, bridge.ErrPrecondition):
		code, out = http.StatusPreconditionFailed, webdav.NewHTTPError(http.StatusPreconditionFailed, errors.New("the resource changed; fetch it again"))
	case errors.Is(err, bridge.ErrReadOnly):
		code, out = http.StatusForbidden, webdav.NewHTTPError(http.StatusForbidden, errors.New("read-only: deadlines come from the task system"))
	case errors.Is(err, bridge.ErrNoCollection) && method == "PUT":
		// RFC 4918 §9.7.1: a PUT whose parent collection is missing is 409.
		code, out = http.StatusConflict, webdav.NewHTTPError(http.StatusConflict, errors.New("no such collection"))
	case errors.Is(err, bridge.ErrNoCollection), errors.Is(err, store.ErrNotFound):
		code, out = http.StatusNotFound, webdav.NewHTTPError(http.StatusNotFound, errors.New("not found"))
	case errors.Is(err, bridge.ErrUIDConflict):
		code, out = http.StatusConflict, caldav.NewPreconditionError(caldav.PreconditionNoUIDConflict)
	case errors.Is(err, bridge.ErrUnsupportedComponent):
		code, out = http.StatusConflict, caldav.NewPreconditionError(caldav.PreconditionSupportedCalendarComponent)
	case errors.Is(err, bridge.ErrInvalidObject):
		code, out = http.StatusConflict, caldav.NewPreconditionError(caldav.PreconditionValidCalendarObjectResource)
	case errors.Is(err, context.Canceled):
		return err
	default:
		b.h.log.Error("device write failed", "method", method, "user", req.user.Name, "collection", t.coll,
			"name", t.name, "err", err)
		return webdav.NewHTTPError(http.StatusInternalServerError, errors.New("internal error"))
	}
	b.h.writes.WithLabelValues(fmt.Sprintf("refused-%d", code)).Inc()
	b.h.log.Info("device write refused", "method", method, "user", req.user.Name, "collection", t.coll,
		"name", t.name, "status", code, "reason", err.Error(), "ua", req.ua)
	return out
}

func notFound(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return webdav.NewHTTPError(http.StatusNotFound, err)
	}
	return err
}
