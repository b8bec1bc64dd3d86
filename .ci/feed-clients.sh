#!/usr/bin/env bash
# .ci/feed-clients.sh: the calendar feed (/feeds/<token>.ics) read by real
# clients against a live duebridge.
#
# Run as root on Debian from the repository (any working directory). It
# installs, once, Debian's python3-icalendar and khal; builds duebridge;
# starts it on 127.0.0.1 with free ports, a generated config and a temp data
# dir; feeds three tasks (two with deadlines) through the signed webhook;
# issues alice's feed URL with `duebridge feed-url`; then
#   1. curl fetches it (200, text/calendar, an ETag) and revalidates it with
#      If-None-Match (304);
#   2. python3-icalendar parses it: one VEVENT per deadline, with the titles;
#   3. khal imports it (--batch) into a local vdir calendar of a temp khal
#      config and `khal list` shows both deadlines;
#   4. `feed-url --revoke` ends it: the URL answers 404.
# Bounded to about a minute. Exits non-zero if any check fails. Every
# process it starts is stopped by its pid on exit. KEEP=1 keeps the temp dir.
set -euo pipefail

NAME=feed-clients
. "$(dirname "$0")/lib.sh"

need python3-icalendar khal curl openssl

configure_duebridge alice

start_duebridge

task_dates
body=$(
	cat <<EOF
[{"id":"FD-1","title":"Ship release 2.1","project":"Release","assignees":["alice"],"due":"$due1","updated_at":"$now","version":1},
 {"id":"FD-2","title":"Write release notes","project":"Release","assignees":["alice"],"due":"$due2","updated_at":"$now","version":1},
 {"id":"FD-3","title":"Review the backup report","project":"Ops","assignees":["alice"],"updated_at":"$now","version":1}]
EOF
)
answer=$(post_tasks "$body")
if [ "$answer" = '{"accepted":3,"ignored":0}' ]; then ok "webhook accepted 3 tasks"; else bad "webhook: $answer"; fi

feed=$("$work/duebridge" feed-url --config "$work/duebridge.yaml" --user alice | head -1)
case "$feed" in
"$base"/feeds/*.ics) ok "feed-url printed $base/feeds/….ics" ;;
*) bad "feed-url printed: $feed" ;;
esac

# 1. curl: a full fetch, then a revalidation that costs a 304.
code=$(curl -sS -m 10 -D "$work/headers" -o "$work/feed.ics" -w '%{http_code}' "$feed")
etag=$(sed -n 's/^[Ee][Tt][Aa][Gg]: *\(.*\)\r$/\1/p' "$work/headers")
if [ "$code" = 200 ] && grep -qi '^content-type: text/calendar' "$work/headers" && [ -n "$etag" ]; then
	ok "curl fetched the feed (200, text/calendar, ETag $etag)"
else
	bad "curl: $code $(cat "$work/headers")"
fi
code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$feed")
if [ "$code" = 304 ]; then ok "revalidation with If-None-Match: 304"; else bad "revalidation: $code"; fi

# 2. python3-icalendar: the deadlines as events.
if out=$("$PY" - "$work/feed.ics" <<'EOF' 2>&1
import sys
from icalendar import Calendar
cal = Calendar.from_ical(open(sys.argv[1], "rb").read())
events = sorted(str(e.get("summary")) for e in cal.walk("VEVENT"))
want = ["Ship release 2.1", "Write release notes"]
if not any(want[0] in s for s in events) or not any(want[1] in s for s in events) or len(events) != 2:
    sys.exit("events: %r" % events)
if any("backup report" in s for s in events):
    sys.exit("a task without a deadline became an event: %r" % events)
print("%d events: %s" % (len(events), "; ".join(events)))
EOF
); then ok "python3-icalendar: $out"; else bad "python3-icalendar: $out"; fi

# 3. khal: import into a local vdir calendar, then list the deadlines.
export HOME="$work/home"
mkdir -p "$HOME" "$work/khal/feed"
cat >"$work/khal.conf" <<EOF
[calendars]
[[feed]]
path = $work/khal/feed
type = calendar

[locale]
timeformat = %H:%M
dateformat = %Y-%m-%d
longdateformat = %Y-%m-%d
datetimeformat = %Y-%m-%d %H:%M
longdatetimeformat = %Y-%m-%d %H:%M
EOF
khal_() { timeout 20 khal -c "$work/khal.conf" "$@"; }
if khal_ import --batch -a feed "$work/feed.ics" >"$work/khal-import.log" 2>&1; then
	ok "khal import --batch"
else
	bad "khal import: $(tail -5 "$work/khal-import.log")"
fi
listed=$(khal_ list --format '{start-date} {title}' today 7d 2>"$work/khal-list.err" || true)
d1=$(date -u -d "$due1" +%Y-%m-%d)
if grep -q "Ship release 2.1" <<<"$listed" && grep -q "$due2 .*Write release notes" <<<"$listed"; then
	ok "khal list shows both deadlines"
else
	bad "khal list (want Ship release 2.1 around $d1, Write release notes on $due2): $listed $(cat "$work/khal-list.err")"
fi

# 4. Revoked: the URL is gone.
"$work/duebridge" feed-url --config "$work/duebridge.yaml" --user alice --revoke >/dev/null
code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' "$feed")
if [ "$code" = 404 ]; then ok "revoked feed URL: 404"; else bad "revoked feed URL: $code"; fi

echo "feed-clients: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
