package calendar

import (
	"encoding/xml"
	"net/http"
	"slices"
	"strconv"
)

// Property names we answer.
var (
	pResourceType            = xml.Name{Space: nsDAV, Local: "resourcetype"}
	pDisplayName             = xml.Name{Space: nsDAV, Local: "displayname"}
	pCurrentUserPrincipal    = xml.Name{Space: nsDAV, Local: "current-user-principal"}
	pPrincipalURL            = xml.Name{Space: nsDAV, Local: "principal-URL"}
	pPrincipalCollectionSet  = xml.Name{Space: nsDAV, Local: "principal-collection-set"}
	pOwner                   = xml.Name{Space: nsDAV, Local: "owner"}
	pCurrentUserPrivilegeSet = xml.Name{Space: nsDAV, Local: "current-user-privilege-set"}
	pSupportedReportSet      = xml.Name{Space: nsDAV, Local: "supported-report-set"}
	pSyncToken               = xml.Name{Space: nsDAV, Local: "sync-token"}
	pGetETag                 = xml.Name{Space: nsDAV, Local: "getetag"}
	pGetContentType          = xml.Name{Space: nsDAV, Local: "getcontenttype"}
	pGetContentLength        = xml.Name{Space: nsDAV, Local: "getcontentlength"}
	pGetLastModified         = xml.Name{Space: nsDAV, Local: "getlastmodified"}

	pCalendarHomeSet        = xml.Name{Space: nsCalDAV, Local: "calendar-home-set"}
	pCalendarUserAddressSet = xml.Name{Space: nsCalDAV, Local: "calendar-user-address-set"}
	pCalendarUserType       = xml.Name{Space: nsCalDAV, Local: "calendar-user-type"}
	pCalendarDescription    = xml.Name{Space: nsCalDAV, Local: "calendar-description"}
	pSupportedComponentSet  = xml.Name{Space: nsCalDAV, Local: "supported-calendar-component-set"}
	pSupportedCalendarData  = xml.Name{Space: nsCalDAV, Local: "supported-calendar-data"}
	pMaxResourceSize        = xml.Name{Space: nsCalDAV, Local: "max-resource-size"}
	// RFC 4331 quota properties: answered only when asked for by name
	// (not in allprop), on writable lists.
	pQuotaAvailableBytes         = xml.Name{Space: nsDAV, Local: "quota-available-bytes"}
	pQuotaUsedBytes              = xml.Name{Space: nsDAV, Local: "quota-used-bytes"}
	pCalendarData                = xml.Name{Space: nsCalDAV, Local: "calendar-data"}
	pScheduleCalendarTransp      = xml.Name{Space: nsCalDAV, Local: "schedule-calendar-transp"}
	pGetCTag                     = xml.Name{Space: nsCS, Local: "getctag"}
	pEmailAddressSet             = xml.Name{Space: nsCS, Local: "email-address-set"}
	pCalendarColor               = xml.Name{Space: nsApple, Local: "calendar-color"}
	pCalendarOrder               = xml.Name{Space: nsApple, Local: "calendar-order"}
	eValidSyncToken              = xml.Name{Space: nsDAV, Local: "valid-sync-token"}
	eQuotaNotExceeded            = xml.Name{Space: nsDAV, Local: "quota-not-exceeded"}
	eSupportedReport             = xml.Name{Space: nsDAV, Local: "supported-report"}
	eSyncTraversalSupported      = xml.Name{Space: nsDAV, Local: "sync-traversal-supported"}
	eMaxResourceSize             = xml.Name{Space: nsCalDAV, Local: "max-resource-size"}
	eNumberOfMatches             = xml.Name{Space: nsDAV, Local: "number-of-matches-within-limits"}
	eValidCalendarData           = xml.Name{Space: nsCalDAV, Local: "valid-calendar-data"}
	eSupportedCalendarData       = xml.Name{Space: nsCalDAV, Local: "supported-calendar-data"}
	eNoUIDConflict               = xml.Name{Space: nsCalDAV, Local: "no-uid-conflict"}
	eSupportedCalendarComponent  = xml.Name{Space: nsCalDAV, Local: "supported-calendar-component"}
	eValidCalendarObjectResource = xml.Name{Space: nsCalDAV, Local: "valid-calendar-object-resource"}
)

// Fixed property contents.
const (
	reportsXML = `<d:supported-report><d:report><c:calendar-multiget/></d:report></d:supported-report>` +
		`<d:supported-report><d:report><c:calendar-query/></d:report></d:supported-report>` +
		`<d:supported-report><d:report><d:sync-collection/></d:report></d:supported-report>`
	homeReportsXML = `<d:supported-report><d:report><d:sync-collection/></d:report></d:supported-report>`
	// A set without write, write-content or bind is what makes iOS show a
	// calendar read-only (sabre-io/dav#523); it ignores per-object ACLs, so
	// writes are refused with 403 as well.
	readOnlyPrivXML = `<d:privilege><d:read/></d:privilege><d:privilege><d:read-current-user-privilege-set/></d:privilege>`
	calReadPrivXML  = readOnlyPrivXML + `<d:privilege><c:read-free-busy/></d:privilege>`
	writablePrivXML = calReadPrivXML + `<d:privilege><d:write/></d:privilege><d:privilege><d:write-content/></d:privilege>` +
		`<d:privilege><d:write-properties/></d:privilege><d:privilege><d:bind/></d:privilege><d:privilege><d:unbind/></d:privilege>`
	calendarDataTypeXML = `<c:calendar-data content-type="text/calendar" version="2.0"/>`
)

// propReq is what a PROPFIND (or a REPORT's DAV:prop) asks for.
type propReq struct {
	allProp  bool
	propName bool
	props    []xml.Name
	// tags, if not nil, are props' tags (see withTags).
	tags []propTags
}

// propTags are one property's start, end and empty-element tags.
type propTags struct{ open, close, empty string }

// withTags returns q with its properties' tags written out. A PROPFIND
// body is parsed once and kept (propBodyCache): its tags are then written
// once, not per resource of every poll (each with a map lookup of the
// prefix, for 11 resources × 38 properties).
func (q propReq) withTags() propReq {
	q.tags = make([]propTags, len(q.props))
	for i, n := range q.props {
		q.tags[i] = propTags{open: string(appendOpen(nil, n, false)), close: string(appendClose(nil, n)),
			empty: string(appendOpen(nil, n, true))}
	}
	return q
}

func (q propReq) wants(name xml.Name) bool {
	for _, n := range q.props {
		if n == name {
			return true
		}
	}
	return false
}

// resource answers properties of one href. get returns the property's
// content (escaped XML) and whether the resource has it.
type resource struct {
	href  string
	get   func(xml.Name) (string, bool)
	names []xml.Name // the properties allprop and propname list
}

// results evaluates q on r.
func (r resource) results(q propReq) []propResult {
	return r.appendResults(nil, q)
}

// appendResults appends the evaluation of q on r to out.
func (r resource) appendResults(out []propResult, q propReq) []propResult {
	switch {
	case q.propName:
		for _, n := range r.names {
			out = append(out, propResult{name: n, status: http.StatusOK})
		}
		return out
	case q.allProp:
		out = slices.Grow(out, len(r.names)+len(q.props))
		for _, n := range r.names {
			if v, ok := r.get(n); ok {
				out = append(out, propResult{name: n, status: http.StatusOK, inner: v})
			}
		}
		for _, n := range q.props { // DAV:include
			if slices.Contains(r.names, n) {
				continue
			}
			if v, ok := r.get(n); ok {
				out = append(out, propResult{name: n, status: http.StatusOK, inner: v})
			} else {
				out = append(out, propResult{name: n, status: http.StatusNotFound})
			}
		}
		return out
	}
	out = slices.Grow(out, len(q.props))
	for _, n := range q.props {
		if v, ok := r.get(n); ok {
			out = append(out, propResult{name: n, status: http.StatusOK, inner: v})
		} else {
			out = append(out, propResult{name: n, status: http.StatusNotFound})
		}
	}
	return out
}

// view is what property values of one request depend on.
type view struct {
	user    *User
	limits  Limits
	epoch   string
	escapes *escapeCache
	// quota is read once per request, and only when a writable list's
	// quota properties are asked for.
	quota func() (quota, error)

	// Values every list of a home listing shares, formatted once per
	// request rather than once per list (see quotaXML, principalXML).
	principalText              string
	quotaUsed, quotaAvailable  string
	quotaFormatted, quotaFound bool
}

// principalXML is the DAV:href of the user's principal.
func (v *view) principalXML() string {
	if v.principalText == "" {
		v.principalText = hrefXML(principalHref(v.user.Name))
	}
	return v.principalText
}

// quotaXML is the quota's used and available bytes as property values;
// ok is false when the quota could not be read (the properties are left
// out, not the whole answer). available is "" when there is no limit.
func (v *view) quotaXML() (used, available string, ok bool) {
	if !v.quotaFormatted {
		v.quotaFormatted = true
		q, err := v.quota()
		if err == nil {
			v.quotaFound = true
			v.quotaUsed = strconv.FormatInt(q.used, 10)
			if q.available >= 0 {
				v.quotaAvailable = strconv.FormatInt(q.available, 10)
			}
		}
	}
	return v.quotaUsed, v.quotaAvailable, v.quotaFound
}

// quota is the user's own-object storage budget (RFC 4331), shared by
// every writable list.
type quota struct{ used, available int64 }

var rootNames = []xml.Name{pResourceType, pDisplayName, pCurrentUserPrincipal, pPrincipalCollectionSet,
	pCurrentUserPrivilegeSet, pSupportedReportSet}

func (v *view) root(href string) resource {
	return resource{href: href, names: rootNames, get: func(n xml.Name) (string, bool) {
		switch n {
		case pResourceType:
			return "<d:collection/>", true
		case pDisplayName:
			return "duebridge", true
		case pCurrentUserPrincipal:
			return v.principalXML(), true
		case pCalendarHomeSet:
			// Not in allprop; some clients ask the context path for it
			// directly instead of going through the principal.
			return hrefXML(homeHref(v.user.Name)), true
		case pPrincipalCollectionSet:
			return hrefXML(Prefix), true
		case pCurrentUserPrivilegeSet:
			return readOnlyPrivXML, true
		case pSupportedReportSet:
			return "", true
		}
		return "", false
	}}
}

var principalNames = []xml.Name{pResourceType, pDisplayName, pCurrentUserPrincipal, pPrincipalURL,
	pCalendarHomeSet, pCalendarUserAddressSet, pCalendarUserType, pEmailAddressSet, pPrincipalCollectionSet,
	pOwner, pCurrentUserPrivilegeSet, pSupportedReportSet}

func (v *view) principal() resource {
	u := v.user
	return resource{href: principalHref(u.Name), names: principalNames, get: func(n xml.Name) (string, bool) {
		switch n {
		case pResourceType:
			return "<d:collection/><d:principal/>", true
		case pDisplayName:
			return escaped(u.Name), true
		case pCurrentUserPrincipal, pPrincipalURL, pOwner:
			return v.principalXML(), true
		case pCalendarHomeSet:
			return hrefXML(homeHref(u.Name)), true
		case pCalendarUserAddressSet:
			// iOS recognises "me" among attendees by the mailto: address.
			s := ""
			if u.Email != "" {
				s = hrefXML("mailto:" + u.Email)
			}
			return s + v.principalXML(), true
		case pCalendarUserType:
			return "INDIVIDUAL", true
		case pEmailAddressSet:
			if u.Email == "" {
				return "", false
			}
			return "<cs:email-address>" + escaped(u.Email) + "</cs:email-address>", true
		case pPrincipalCollectionSet:
			return hrefXML(Prefix), true
		case pCurrentUserPrivilegeSet:
			return readOnlyPrivXML, true
		case pSupportedReportSet:
			return "", true
		}
		return "", false
	}}
}

var homeNames = []xml.Name{pResourceType, pDisplayName, pCurrentUserPrincipal, pOwner, pCurrentUserPrivilegeSet,
	pSupportedReportSet, pSyncToken, pGetCTag}

// home describes the calendar home; seq is the newest revision of any of
// its collections (its sync token and ctag).
func (v *view) home(seq int64) resource {
	u := v.user
	return resource{href: homeHref(u.Name), names: homeNames, get: func(n xml.Name) (string, bool) {
		switch n {
		case pResourceType:
			return "<d:collection/>", true
		case pDisplayName:
			return escaped(u.Name), true
		case pCurrentUserPrincipal, pOwner:
			return v.principalXML(), true
		case pCurrentUserPrivilegeSet:
			// No bind: lists come from the task system, MKCALENDAR is refused.
			return readOnlyPrivXML, true
		case pSupportedReportSet:
			return homeReportsXML, true
		case pSyncToken:
			return escaped(syncToken(v.epoch, seq)), true
		case pGetCTag:
			return escaped(ctag(v.epoch, seq)), true
		}
		return "", false
	}}
}

var collectionNames = []xml.Name{pResourceType, pDisplayName, pCalendarDescription, pSupportedComponentSet,
	pSupportedCalendarData, pMaxResourceSize, pGetCTag, pSyncToken, pCurrentUserPrivilegeSet, pSupportedReportSet,
	pCalendarColor, pCalendarOrder, pOwner, pCurrentUserPrincipal, pScheduleCalendarTransp}

func writable(c Collection) bool { return c.Todos }

func component(c Collection) string {
	if c.Todos {
		return "VTODO"
	}
	return "VEVENT"
}

func (v *view) collection(c Collection) resource {
	return v.collectionAt(&c)
}

// collectionAt is collection for a list the caller keeps unchanged while
// the resource is in use: the home listing's lists are not copied to the
// heap one by one.
func (v *view) collectionAt(cp *Collection) resource {
	u := v.user
	token, ctag := collectionTags(v.epoch, cp.Seq)
	return resource{href: collHref(u.Name, cp.Name), names: collectionNames, get: func(n xml.Name) (string, bool) {
		c := cp
		switch n {
		case pResourceType:
			return "<d:collection/><c:calendar/>", true
		case pDisplayName:
			return escaped(c.DisplayName), true
		case pCalendarDescription:
			if c.Project == "" {
				return "", false
			}
			return escaped(c.Project), true
		case pSupportedComponentSet:
			// Reminders shows exactly the collections offering VTODO.
			if c.Todos { // constants: a concatenation would be built per list
				return `<c:comp name="VTODO"/>`, true
			}
			return `<c:comp name="VEVENT"/>`, true
		case pSupportedCalendarData:
			return calendarDataTypeXML, true
		case pMaxResourceSize:
			return strconv.FormatInt(v.limits.ICalObjectBytes, 10), v.limits.ICalObjectBytes > 0
		case pQuotaAvailableBytes, pQuotaUsedBytes:
			if !writable(*c) || v.quota == nil {
				return "", false
			}
			used, available, ok := v.quotaXML()
			if !ok {
				return "", false // a store error leaves the property out, not the whole answer
			}
			if n == pQuotaUsedBytes {
				return used, true
			}
			return available, available != ""
		case pGetCTag:
			return escaped(ctag), true
		case pSyncToken:
			return escaped(token), true
		case pCurrentUserPrivilegeSet:
			if writable(*c) {
				return writablePrivXML, true
			}
			return calReadPrivXML, true
		case pSupportedReportSet:
			return reportsXML, true
		case pCalendarColor:
			return escaped(c.Color), c.Color != ""
		case pCalendarOrder:
			return strconv.Itoa(c.Order), true
		case pOwner, pCurrentUserPrincipal:
			return v.principalXML(), true
		case pScheduleCalendarTransp:
			// Deadlines and tasks never make anyone busy.
			return "<c:transparent/>", true
		}
		return "", false
	}}
}

var objectNames = []xml.Name{pResourceType, pGetETag, pGetContentType, pGetContentLength, pGetLastModified,
	pOwner, pCurrentUserPrivilegeSet}

// object describes a calendar object; o.Data may be nil when the request
// needs neither calendar-data nor getcontentlength.
func (v *view) object(c Collection, o *Object) resource {
	u := v.user
	return resource{href: objHref(u.Name, o.Collection, o.Name), names: objectNames, get: func(n xml.Name) (string, bool) {
		switch n {
		case pResourceType:
			return "", true
		case pGetETag:
			return escaped(o.ETag), true
		case pGetContentType:
			if c.Todos { // constants: no string built per object
				return "text/calendar; charset=utf-8; component=vtodo", true
			}
			return "text/calendar; charset=utf-8; component=vevent", true
		case pGetContentLength:
			return strconv.Itoa(len(o.Data)), o.Data != nil
		case pGetLastModified:
			return o.Modified.UTC().Format(http.TimeFormat), !o.Modified.IsZero()
		case pOwner:
			return v.principalXML(), true
		case pCurrentUserPrivilegeSet:
			if writable(c) {
				return writablePrivXML, true
			}
			return calReadPrivXML, true
		case pCalendarData:
			// The stored octets, folded at 75 as RFC 5545 wants; go-webdav
			// would re-encode them unfolded.
			if o.Data == nil {
				return "", false
			}
			return v.escapes.get(o.ETag, o.Data), true
		}
		return "", false
	}}
}

// needsData reports whether answering q for objects needs their bytes.
func needsData(q propReq) bool {
	return q.allProp || q.wants(pCalendarData) || q.wants(pGetContentLength)
}
