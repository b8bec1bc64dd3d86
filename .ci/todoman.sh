#!/usr/bin/env bash
# .ci/todoman.sh: todoman on a vdirsyncer-synced vdir against a live duebridge.
#
# Run as root on Debian from the repository (any working directory). It
# installs, once, Debian's todoman and vdirsyncer; builds duebridge; starts
# it on 127.0.0.1 with free ports, a generated config and a temp data dir;
# feeds three tasks through the signed webhook; then, as a person at a
# terminal would:
#   1. vdirsyncer discover + sync, todoman lists the tasks;
#   2. todoman done on a task (the completion reaches the task system,
#      signed), todoman edit --priority on a task-system task (a field the
#      task system owns: the server keeps its value), todoman new (the
#      user's own task, stored byte for byte);
#   3. vdirsyncer sync until it settles: the second sync after the edits
#      must be a no-op, and then every local file must equal the server's
#      object (the server's values win, nothing stale stays local).
# Exits non-zero if any check fails. Every process it starts is stopped by
# its pid on exit. KEEP=1 keeps the temp dir for a look.
set -euo pipefail

NAME=todoman
. "$(dirname "$0")/lib.sh"

need todoman vdirsyncer curl openssl python3

configure_duebridge --callback alice

"$PY" "$root/testdata/caldav/clients/callback_receiver.py" "$cb_port" "$secret" "$work/callbacks.jsonl" &
pids+=($!)
start_duebridge

task_dates
body=$(
	cat <<EOF
[{"id":"TD-1","title":"Ship release 2.1","project":"Release","assignees":["alice"],"due":"$due1","priority":"high","updated_at":"$now","version":1},
 {"id":"TD-2","title":"Write release notes","project":"Release","assignees":["alice"],"due":"$due2","updated_at":"$now","version":1},
 {"id":"TD-3","title":"Review the backup report","project":"Ops","assignees":["alice"],"updated_at":"$now","version":1}]
EOF
)
answer=$(post_tasks "$body")
if [ "$answer" = '{"accepted":3,"ignored":0}' ]; then ok "webhook accepted 3 tasks"; else bad "webhook: $answer"; fi

# 1. vdirsyncer into a vdir, todoman on its task lists.
vd="$work/vdir"
mkdir -p "$vd/status" "$vd/calendars" "$work/home"
export HOME="$work/home"
cat >"$vd/config" <<EOF
[general]
status_path = "$vd/status/"

[pair duebridge]
a = "duebridge_remote"
b = "duebridge_local"
collections = ["from a"]

[storage duebridge_remote]
type = "caldav"
url = "$base/"
username = "alice"
password = "$alice_pw"

[storage duebridge_local]
type = "filesystem"
path = "$vd/calendars/"
fileext = ".ics"
EOF
cat >"$work/todoman.py" <<EOF
path = "$vd/calendars/*-tasks"
cache_path = "$work/todoman-cache.sqlite3"
date_format = "%Y-%m-%d"
time_format = "%H:%M"
default_list = "release-tasks"
EOF
vsync() { vdirsyncer -vINFO -c "$vd/config" sync >"$work/sync-$1.log" 2>&1; }
todo() { todoman --color never -c "$work/todoman.py" "$@"; }
answers=$(printf 'y\n%.0s' $(seq 20))
if vdirsyncer -c "$vd/config" discover <<<"$answers" >"$work/discover.log" 2>&1 && vsync 1; then
	ok "vdirsyncer discover and sync"
else
	bad "vdirsyncer: $(tail -5 "$work/discover.log" "$work/sync-1.log" 2>/dev/null)"
fi
todo --porcelain list >"$work/list.json" 2>"$work/todoman.err" || true
id_of() { "$PY" -c 'import json,sys; print(next((str(t["id"]) for t in json.load(open(sys.argv[1])) if t["summary"] == sys.argv[2]), ""))' "$work/list.json" "$1"; }
id1=$(id_of "Ship release 2.1")
id2=$(id_of "Write release notes")
id3=$(id_of "Review the backup report")
if [ -n "$id1" ] && [ -n "$id2" ] && [ -n "$id3" ]; then
	ok "todoman lists the three tasks"
else
	bad "todoman list: $(cat "$work/list.json" "$work/todoman.err")"
fi

# 2. Done, a refused edit, a new task.
if [ -n "$id2" ] && todo done "$id2" >/dev/null 2>>"$work/todoman.err"; then ok "todoman done"; else bad "todoman done: $(tail -3 "$work/todoman.err")"; fi
if [ -n "$id1" ] && todo edit --priority low "$id1" >/dev/null 2>>"$work/todoman.err"; then ok "todoman edit --priority low"; else bad "todoman edit: $(tail -3 "$work/todoman.err")"; fi
if todo new -l release-tasks "Buy milk" >/dev/null 2>>"$work/todoman.err"; then ok "todoman new"; else bad "todoman new: $(tail -3 "$work/todoman.err")"; fi

# 3. Sync until settled: the uploads, then what the server changed comes
# back (a write answered without an ETag is fetched again), then nothing.
vsync 2 || bad "sync after the edits: $(tail -5 "$work/sync-2.log")"
vsync 3 || bad "second sync: $(tail -5 "$work/sync-3.log")"
vsync 4 || bad "third sync: $(tail -5 "$work/sync-4.log")"
if grep -Eqi 'copying|updating|deleting' "$work/sync-4.log"; then
	bad "sync does not settle; the third still transfers: $(grep -Ei 'copying|updating|deleting' "$work/sync-4.log" | head -5)"
elif grep -Eqi 'copying|updating|deleting' "$work/sync-3.log"; then
	ok "sync settles (the second sync fetched what the server changed; the third was a no-op)"
else
	ok "the second sync after the edits was a no-op"
fi

for _ in $(seq 50); do
	grep -q '"id": "TD-2"' "$work/callbacks.jsonl" 2>/dev/null && break
	sleep 0.2
done
if grep -q '"id": "TD-2", "status": "done", "user": "alice"' "$work/callbacks.jsonl" 2>/dev/null &&
	! grep -q '"signature_ok": false' "$work/callbacks.jsonl"; then
	ok "completion reached the task system, signed"
else
	bad "completion callback: $(cat "$work/callbacks.jsonl" 2>/dev/null)"
fi

# Local = server, object by object, and what each should hold.
if out=$("$PY" "$root/.ci/vdir_compare.py" "$base" alice "$alice_pw" "$vd/calendars" 2>&1); then
	ok "local vdir equals the server"
	sed 's/^/     /' <<<"$out"
else
	bad "local vdir differs from the server"
	sed 's/^/     /' <<<"$out"
fi

echo "todoman: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
