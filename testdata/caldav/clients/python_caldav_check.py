#!/usr/bin/python3
"""python3-caldav (Debian's package) against a live duebridge.

Usage: python_caldav_check.py BASE_URL USER PASSWORD

Discovers the account from the bare host, lists the calendars, reads the
reminders and deadlines the webhook fed in, syncs with RFC 6578 tokens, and
completes one reminder. Prints one "ok"/"FAIL" line per check; exits 1 if
any check failed. The task ids and titles are the ones .ci/caldav-clients.sh
sends.
"""
import sys
from datetime import datetime, timedelta, timezone

import caldav

base, user, password = sys.argv[1:4]
failed = 0


def check(name, cond, detail=""):
    global failed
    print(("ok   " if cond else "FAIL ") + name + ("" if cond else ": " + str(detail)))
    if not cond:
        failed += 1


client = caldav.DAVClient(url=base, username=user, password=password)
principal = client.principal()
check("principal discovered from the bare host", principal.url.path == "/dav/%s/" % user, principal.url)
home = principal.calendar_home_set
check("calendar-home-set", str(home.url).endswith("/dav/%s/calendars/" % user), home.url)
check("calendar-user-address-set has mailto:",
      any(a.startswith("mailto:") for a in principal.calendar_user_address_set()),
      principal.calendar_user_address_set())

cals = {c.url.path.rstrip("/").rsplit("/", 1)[-1]: c for c in principal.calendars()}
check("lists and calendars", {"release-tasks", "release-deadlines", "ops-tasks"} <= set(cals), sorted(cals))
tasks, deadlines = cals["release-tasks"], cals["release-deadlines"]
check("reminders list offers VTODO", tasks.get_supported_components() == ["VTODO"], tasks.get_supported_components())
check("deadlines calendar offers VEVENT", deadlines.get_supported_components() == ["VEVENT"],
      deadlines.get_supported_components())
check("display name", tasks.get_display_name() == "Release", tasks.get_display_name())

todos = tasks.todos()
titles = sorted(str(t.icalendar_component.get("SUMMARY")) for t in todos)
check("open reminders", titles == ["Ship release 2.1", "Write release notes"], titles)
now = datetime.now(timezone.utc)
events = deadlines.date_search(start=now, end=now + timedelta(days=10))
check("deadlines in the next 10 days (time-range query)", len(events) == 2, [e.url for e in events])
events = deadlines.date_search(start=now - timedelta(days=30), end=now - timedelta(days=1))
check("no deadlines last month", len(events) == 0, [e.url for e in events])

# RFC 6578: a full sync, then nothing new, then one change.
coll = tasks.objects_by_sync_token(load_objects=True)
check("sync-collection (full)", len(list(coll)) == 2, list(coll))
token = coll.sync_token
again = tasks.objects_by_sync_token(sync_token=token)
check("sync-collection (incremental, no change)", len(list(again)) == 0, list(again))

# Complete "Ship release 2.1" as a user would.
ship = [t for t in todos if str(t.icalendar_component.get("SUMMARY")) == "Ship release 2.1"][0]
ship.complete()
ship.load()
check("completion stored", str(ship.icalendar_component.get("STATUS")) == "COMPLETED",
      ship.icalendar_component.get("STATUS"))
left = sorted(str(t.icalendar_component.get("SUMMARY")) for t in tasks.todos())
check("completed reminder leaves the open list", left == ["Write release notes"], left)
changed = tasks.objects_by_sync_token(sync_token=token)
check("sync-collection (incremental) reports the completion",
      [o.url.path for o in changed] == [ship.url.path], [o.url for o in changed])

# A read-only deadline cannot be edited.
ev = deadlines.events()[0]
ev.icalendar_component["SUMMARY"] = "edited"
try:
    ev.save()
    check("deadline edit refused", False, "saved")
except caldav.lib.error.DAVError as e:
    check("deadline edit refused", "403" in str(e) or "Forbidden" in str(e), e)

sys.exit(1 if failed else 0)
