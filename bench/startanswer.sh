#!/usr/bin/env bash
# bench/startanswer.sh OLD_BIN NEW_BIN N... — how long a start with N users in
# the config keeps phones waiting, for two duebridge binaries run one after
# the other on the same file (written by bench/bigconfig.py, ~330 bytes
# a user; user u0000000 has a real argon2id hash of a known password).
#
# For each binary, three starts: a first start on an empty data directory,
# a restart on that store (unchanged config; TASKS tasks were posted before,
# spread over the users), and a restart after the default lead times changed
# (every user's rendering inputs changed while stopped). Each reports, from
# exec: when the log says "duebridge serving", when the first authenticated
# CalDAV request was answered (PROPFIND Depth 0 on u0000000's home with its
# password, 207; tried every 50 ms until a connection is accepted, then
# waited for: a try abandoned after a few seconds would leave its
# argon2id check running and queue the next one behind it), the
# process's CPU (utime+stime) and RSS then, and when the start's re-render
# checks were done (old: before "serving"; new: "start re-render checks
# done").
set -euo pipefail
old=$1 new=$2
shift 2
work=$(mktemp -d /tmp/startanswer.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
tck=$(getconf CLK_TCK)
port=${PORT:-28431}
tasks=${TASKS:-20000}
settle=${SETTLE:-20}
pw=bench-start-pw
hash=$(printf '%s' "$pw" | "$new" hash-password)

gen() { # gen N FILE
	python3 "$(dirname "$0")/bigconfig.py" "$1" "$2" "$port" "$hash" \
		$'imap:\n  listen: 127.0.0.1:0\nnotifications:\n  lead_times: [24h, 1h]\n'
}
cpu() { awk -v t="$tck" '{printf "%.1f", ($14+$15)/t}' "/proc/$1/stat"; }
rss() { awk '/^VmRSS/{printf "%d MB", $2/1024}' "/proc/$1/status"; }
since() { echo "${2:-$(date +%s.%N)} - $1" | bc | xargs printf '%.1f'; }
logged() { # logged LOG PATTERN: the epoch time of the first line matching, from its "time" field
	date -d "$(grep -m1 "$2" "$1" | sed 's/.*"time":"\([^"]*\)".*/\1/')" +%s.%N
}
answered() {
	[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 300 -X PROPFIND -H 'Depth: 0' \
		-u "u0000000:$pw" "http://127.0.0.1:$port/dav/u0000000/")" = 207 ]
}
post_tasks() { # post_tasks N USERS: N tasks, 500 to a request, one random assignee each
	python3 - "$1" "$2" "$port" <<'EOF'
import datetime, hashlib, hmac, json, random, sys, urllib.request
n, users, port = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
due = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=3)).strftime("%Y-%m-%dT17:00:00Z")
for start in range(0, n, 500):
    body = json.dumps([{"id": "T-%d" % i, "title": "Task %d" % i, "project": "P%d" % (i % 7),
                        "assignees": ["u%07d" % random.randrange(users)], "due": due}
                       for i in range(start, min(n, start + 500))]).encode()
    sig = hmac.new(b"0123456789abcdef", body, hashlib.sha256).hexdigest()
    req = urllib.request.Request("http://127.0.0.1:%s/hooks/load" % port, data=body,
                                 headers={"Content-Type": "application/json", "X-Duebridge-Signature": "sha256=" + sig})
    urllib.request.urlopen(req, timeout=60).read()
EOF
}
start() { # start LABEL BIN CFG LOG DONE_PATTERN: runs serve, reports, leaves it running
	local label=$1 bin=$2 cfg=$3 log=$4 donepat=$5 t0 ans
	: >"$log"
	t0=$(date +%s.%N)
	"$bin" serve --config "$cfg" >"$log" 2>&1 &
	pid=$!
	until answered; do
		kill -0 "$pid" 2>/dev/null || { echo "$label: serve exited"; tail -5 "$log"; exit 1; }
		sleep 0.05
	done
	ans="$(since "$t0") s, $(cpu $pid) s CPU, $(rss $pid)"
	until grep -q "$donepat" "$log"; do sleep 0.1; done
	echo "$label: serving $(since "$t0" "$(logged "$log" "duebridge serving")") s;" \
		"first answered PROPFIND $ans; re-render checks done $(since "$t0" "$(logged "$log" "$donepat")") s ($(cpu $pid) s CPU)"
}
stop() {
	kill "$pid"
	wait "$pid" || true
	pid=
}

for n in "$@"; do
	dir=$work/u$n
	mkdir -p "$dir"
	cfg=$dir/duebridge.yaml
	gen "$n" "$cfg"
	echo "# $n users, $(($(stat -c %s "$cfg") / 1000000)) MB, $tasks tasks"
	for which in old new; do
		bin=${!which}
		donepat="start re-render checks done"
		[ "$which" = old ] && donepat="duebridge serving"
		echo "== $which ($bin), load average $(cut -d' ' -f1-3 /proc/loadavg)"
		rm -rf "$dir/data"
		start "first start (empty store)" "$bin" "$cfg" "$dir/log" "$donepat"
		post_tasks "$tasks" "$n"
		sleep "$settle" # the scheduler's first replan
		stop
		start "restart, config unchanged" "$bin" "$cfg" "$dir/log" "$donepat"
		sleep "$settle"
		stop
		sed -i '1,12s/lead_times: \[24h, 1h\]/lead_times: [3h]/' "$cfg"
		start "restart, lead times changed" "$bin" "$cfg" "$dir/log" "$donepat"
		stop
		sed -i '1,12s/lead_times: \[3h\]/lead_times: [24h, 1h]/' "$cfg"
		grep -h "re-render\|rendering inputs" "$dir/log" | cut -c1-200 || true
	done
done
