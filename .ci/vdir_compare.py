#!/usr/bin/env python3
"""vdir_compare.py BASE USER PASSWORD VDIR: a vdirsyncer vdir equals the server.

For each collection directory in VDIR, reads the server's objects of the
collection (sync-collection with calendar-data) and compares them, by UID,
with the local .ics files: the same UIDs, and the same content (line
endings and folding aside: calendar-data travels in XML, whose parsers
turn CRLF into LF). Then checks what todoman's edits should have led to:
the completed task is completed, the task system kept its priority, the
new task exists. Prints one line per finding; exits 1 on any difference.
"""
import base64
import os
import re
import sys
import urllib.request
import xml.etree.ElementTree as ET

base, user, password, vdir = sys.argv[1:5]
auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
BODY = b"""<?xml version="1.0" encoding="utf-8"?>
<d:sync-collection xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">
<d:sync-token/><d:sync-level>1</d:sync-level>
<d:prop><d:getetag/><c:calendar-data/></d:prop></d:sync-collection>"""


def normal(text):
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return re.sub(r"\n[ \t]", "", text).strip()


def uid(text):
    m = re.search(r"^UID:(.*)$", normal(text), re.M)
    return m.group(1).strip() if m else None


def server_objects(coll):
    req = urllib.request.Request(f"{base}/dav/{user}/calendars/{coll}/", data=BODY, method="REPORT",
                                 headers={"Authorization": auth, "Content-Type": "application/xml", "Depth": "1"})
    with urllib.request.urlopen(req) as resp:
        root = ET.fromstring(resp.read())
    out = {}
    for data in root.iter("{urn:ietf:params:xml:ns:caldav}calendar-data"):
        if data.text:
            out[uid(data.text)] = normal(data.text)
    return out


failed = False
everything = {}
for coll in sorted(os.listdir(vdir)):
    path = os.path.join(vdir, coll)
    if not os.path.isdir(path):
        continue
    local = {}
    for name in os.listdir(path):
        if name.endswith(".ics"):
            with open(os.path.join(path, name), encoding="utf-8") as f:
                text = f.read()
            local[uid(text)] = normal(text)
    remote = server_objects(coll)
    everything.update(remote)
    for u in sorted(set(local) | set(remote)):
        if u not in remote:
            print(f"FAIL {coll}: {u} only local")
            failed = True
        elif u not in local:
            print(f"FAIL {coll}: {u} only on the server")
            failed = True
        elif local[u] != remote[u]:
            diff = [f"  local  {l}" for l in local[u].split("\n") if l not in remote[u].split("\n")] + \
                   [f"  server {l}" for l in remote[u].split("\n") if l not in local[u].split("\n")]
            print(f"FAIL {coll}: {u} differs\n" + "\n".join(diff))
            failed = True
    print(f"{coll}: {len(local)} local, {len(remote)} on the server")


def find(summary):
    return next((t for t in everything.values() if re.search(rf"^SUMMARY:{re.escape(summary)}$", t, re.M)), None)


checks = [
    ("Write release notes", r"^STATUS:COMPLETED$", "completed on the server"),
    ("Ship release 2.1", r"^PRIORITY:(?!9$)\d+$", "keeps the task system's priority"),
    ("Buy milk", r"^STATUS:NEEDS-ACTION$", "the new task is on the server"),
]
for summary, pattern, what in checks:
    t = find(summary)
    if t is None or not re.search(pattern, t, re.M):
        print(f"FAIL {summary!r}: not {what}")
        failed = True
    else:
        print(f"ok   {summary!r} {what}")
sys.exit(1 if failed else 0)
