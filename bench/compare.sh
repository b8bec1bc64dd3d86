#!/usr/bin/env bash
# bench/compare.sh — duebridge against Radicale and Xandikos (CalDAV) and
# Dovecot (IMAP) in one session, with the same requests from the same client
# (cmd/duebridge-load), and the issue #8 target runs. Prints ratios at the end.
#
#   bash bench/compare.sh            # everything (about 15-20 minutes on 2 cores)
#   QUICK=1 bash bench/compare.sh    # shorter runs, smaller counts (about 5 minutes)
#   ONLY="dav imap" bash bench/compare.sh
#
# Parts (ONLY selects): dav (PROPFIND Depth 1 / multiget / incremental sync, req/s
# and each server's own CPU per request, on
# duebridge, Radicale, Xandikos), syncscale (incremental sync at 1k and 100k),
# load (webhook → EXISTS / sync visibility / upserts, 1,000 idling conns),
# idle10k (memory per idle connection at 10,000), imap (Dovecot, same IMAP
# load), phones (capacity model).
#
# Installs radicale, xandikos, dovecot-imapd and jq from Debian's packages
# (idempotent, services not started), runs every server on 127.0.0.1 with
# throwaway data and config in a temp dir, stops each by its pid, and writes
# the JSON reports to $OUT (default: a temp dir, printed at the end).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
QUICK=${QUICK:-}
ONLY=${ONLY:-"dav syncscale load idle10k imap phones"}
if [[ -n $QUICK ]]; then
	DUR=${DUR:-5s} TASKS=${TASKS:-1000} BIGTASKS=${BIGTASKS:-20000} IDLE=${IDLE:-1000} IDLEBIG=${IDLEBIG:-3000}
	PHONES=${PHONES:-20000} PHONE_RATE=${PHONE_RATE:-300} PHONE_DUR=${PHONE_DUR:-10s}
else
	DUR=${DUR:-10s} TASKS=${TASKS:-1000} BIGTASKS=${BIGTASKS:-100000} IDLE=${IDLE:-1000} IDLEBIG=${IDLEBIG:-10000}
	PHONES=${PHONES:-100000} PHONE_RATE=${PHONE_RATE:-300} PHONE_DUR=${PHONE_DUR:-30s}
fi
WORKERS=${WORKERS:-4}
RATE=${RATE:-100}
WORK=$(mktemp -d /tmp/duebridge-compare.XXXXXX)
chmod 755 "$WORK" # Dovecot's auth process (user dovecot) reads the passwd file in it
OUT=${OUT:-$WORK/results}
mkdir -p "$OUT"
PIDS=()
log() { printf '\n=== %s\n' "$*" >&2; }
want() { [[ " $ONLY " == *" $1 "* ]]; }

OLD_INOTIFY=$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo "")
cleanup() {
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	sleep 1
	for p in "${PIDS[@]}"; do
		kill -9 "$p" 2>/dev/null || true
	done
	if [[ -n $OLD_INOTIFY && $OLD_INOTIFY -lt 8192 ]]; then
		echo "$OLD_INOTIFY" > /proc/sys/fs/inotify/max_user_instances 2>/dev/null || true
	fi
	rm -rf "$WORK/radicale" "$WORK/xandikos" "$WORK/dovecot"
}
trap cleanup EXIT

# --- install (idempotent; policy-rc.d keeps the packages' services from starting)
need=()
for p in radicale xandikos dovecot-imapd jq; do
	dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
	log "installing ${need[*]}"
	made_policy=
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
	[[ -n $made_policy ]] && rm -f /usr/sbin/policy-rc.d
fi

# --- limits: 10,000 IMAP connections need descriptors on both sides; Dovecot
# needs an inotify instance per imap process to announce mail at once.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [[ -n $OLD_INOTIFY && $OLD_INOTIFY -lt 8192 ]]; then
	echo 8192 > /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo "could not raise fs.inotify.max_user_instances: Dovecot falls back to polling" >&2
fi

# --- build both programs once, from this checkout
log "building duebridge and duebridge-load ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
(cd "$ROOT" && go build -o "$WORK/duebridge" ./cmd/duebridge && go build -o "$WORK/duebridge-load" ./cmd/duebridge-load)
LOAD="$WORK/duebridge-load"
DB="$WORK/duebridge"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
	for _ in $(seq 1 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "nothing listens on 127.0.0.1:$1" >&2
	return 1
}
stop_pid() {
	kill "$1" 2>/dev/null || true
	for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
	kill -9 "$1" 2>/dev/null || true
}

# --- CalDAV: the same home (10 calendars, the objects of $TASKS tasks) on all three
if want dav; then
	log "duebridge: CalDAV (seeds $TASKS tasks, exports the objects)"
	"$LOAD" --bin "$DB" --scenario dav --users 1 --projects 5 --tasks "$TASKS" --hash argon2id \
		--duration "$DUR" --workers "$WORKERS" --export-ics "$WORK/ics" --quiet --json "$OUT/dav-duebridge.json"

	log "Radicale $(dpkg-query -W -f '${Version}' radicale): same objects by PUT"
	R="$WORK/radicale"; mkdir -p "$R"
	RP=$(port)
	printf 'load00000:load-password\n' > "$R/users"
	cat > "$R/config" <<-EOF
	[server]
	hosts = 127.0.0.1:$RP
	[auth]
	type = htpasswd
	htpasswd_filename = $R/users
	htpasswd_encryption = plain
	delay = 0
	[storage]
	filesystem_folder = $R/collections
	[rights]
	type = owner_only
	[logging]
	level = warning
	[web]
	type = none
	EOF
	/usr/bin/python3 -m radicale --config "$R/config" > "$R/log" 2>&1 &
	RPID=$!; PIDS+=("$RPID")
	wait_port "$RP"
	"$LOAD" --target "http://127.0.0.1:$RP" --label radicale --pid "$RPID" --scenario dav --users 1 \
		--duration "$DUR" --workers "$WORKERS" --seed-ics "$WORK/ics" --quiet --json "$OUT/dav-radicale.json"
	stop_pid "$RPID"

	log "Xandikos $(dpkg-query -W -f '${Version}' xandikos): same objects by PUT"
	X="$WORK/xandikos"; mkdir -p "$X"
	XP=$(port)
	xandikos -d "$X/data" -l 127.0.0.1 -p "$XP" --autocreate --current-user-principal /load00000/ > "$X/log" 2>&1 &
	XPID=$!; PIDS+=("$XPID")
	wait_port "$XP"
	"$LOAD" --target "http://127.0.0.1:$XP" --label xandikos --pid "$XPID" --scenario dav --users 1 \
		--duration "$DUR" --workers "$WORKERS" --seed-ics "$WORK/ics" --quiet --json "$OUT/dav-xandikos.json"
	stop_pid "$XPID"
fi

# --- incremental sync-collection cost at 1,000 and $BIGTASKS objects in one list
if want syncscale; then
	for n in 1000 "$BIGTASKS"; do
		log "duebridge: incremental sync-collection with $n objects in the list"
		"$LOAD" --bin "$DB" --scenario dav --users 1 --projects 1 --tasks "$n" --seed-batch 1000 --hash bcrypt-min \
			--ops sync --sync-delta 10 --duration "$DUR" --workers "$WORKERS" --quiet --json "$OUT/sync-$n.json"
	done
fi

# --- duebridge under load: webhook → IDLE EXISTS and → sync visibility, 1,000 idling connections
if want load; then
	log "duebridge: load with $IDLE idling IMAP connections, 20 CalDAV pollers, $RATE webhooks/s"
	"$LOAD" --bin "$DB" --users 100 --projects 5 --tasks 20000 --seed-batch 1000 --idle "$IDLE" --dav 20 --rate "$RATE" \
		--duration "$DUR" --hash argon2id --quiet --json "$OUT/load-duebridge.json"
fi

if want idle10k; then
	log "duebridge: memory per idle IMAP connection at $IDLEBIG connections"
	"$LOAD" --bin "$DB" --users 500 --projects 2 --tasks 1000 --idle "$IDLEBIG" --idle-parallel 64 --dav 0 --rate 50 \
		--duration 5s --hash bcrypt-min --quiet --json "$OUT/idle-duebridge.json"
fi

# --- Dovecot: the same IMAP load, APPEND on another connection as the trigger
if want imap; then
	log "Dovecot $(dpkg-query -W -f '${Version}' dovecot-imapd): $IDLE idling connections, $RATE APPENDs/s"
	D="$WORK/dovecot"; mkdir -p "$D/mail" "$D/run" "$D/state"
	chown nobody:nogroup "$D/mail"
	DP=$(port)
	for i in $(seq 0 99); do printf 'load%05d:{PLAIN}load-password\n' "$i"; done > "$D/passwd"
	cat > "$D/dovecot.conf" <<-EOF
	base_dir = $D/run
	state_dir = $D/state
	instance_name = duebridge-compare
	log_path = $D/dovecot.log
	protocols = imap
	listen = 127.0.0.1
	ssl = no
	disable_plaintext_auth = no
	auth_mechanisms = plain login
	mail_location = maildir:$D/mail/%u
	first_valid_uid = 1
	passdb {
	  driver = passwd-file
	  args = scheme=PLAIN username_format=%u $D/passwd
	}
	userdb {
	  driver = static
	  args = uid=nobody gid=nogroup home=$D/mail/%u
	}
	default_process_limit = 12000
	default_client_limit = 24000
	default_vsz_limit = 0
	service imap-login {
	  inet_listener imap {
	    address = 127.0.0.1
	    port = $DP
	  }
	  inet_listener imaps {
	    port = 0
	  }
	}
	service imap {
	  process_limit = 12000
	}
	service anvil {
	  client_limit = 30000
	}
	service auth {
	  client_limit = 30000
	}
	protocol imap {
	  mail_max_userip_connections = 20000
	}
	EOF
	dovecot -F -c "$D/dovecot.conf" > "$D/stdout" 2>&1 &
	DPID=$!; PIDS+=("$DPID")
	wait_port "$DP"
	"$LOAD" --imap "127.0.0.1:$DP" --label dovecot --pid "$DPID" --trigger append --users 100 --idle "$IDLE" \
		--rate "$RATE" --duration "$DUR" --quiet --json "$OUT/imap-dovecot.json"
	stop_pid "$DPID"
fi

# --- capacity: phones polling every 15 minutes
if want phones; then
	log "duebridge: $PHONES phones, $PHONE_RATE home polls/s for $PHONE_DUR (argon2id hashes)"
	"$LOAD" --bin "$DB" --phones "$PHONES" --phone-rate "$PHONE_RATE" --duration "$PHONE_DUR" --projects 5 \
		--seed-batch 500 --hash argon2id --quiet --json "$OUT/phones-duebridge.json" || true
fi

# --- ratios
log "results in $OUT"
python3 - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
def load(name):
    p = os.path.join(out, name)
    return json.load(open(p)) if os.path.exists(p) else None
def op(rep, prefix, key):
    for s in (rep or {}).get("ops", []):
        if s["name"].startswith(prefix):
            return s.get(key)
    return None
def fig(rep, prefix):
    for f in (rep or {}).get("figures", []):
        if f["name"].startswith(prefix):
            return f["value"]
    return None
def opfig(rep, prefix, suffix):
    for f in (rep or {}).get("figures", []):
        if f["name"].startswith(prefix) and f["name"].endswith(suffix):
            return f["value"]
    return None
def ratio(a, b):
    return f"{a / b:.1f}x" if a and b else "n/a"

d, r, x = load("dav-duebridge.json"), load("dav-radicale.json"), load("dav-xandikos.json")
if d:
    ops = ("PROPFIND home Depth 1", "calendar-multiget", "sync-collection")
    print("\nCalDAV, closed loop, same home and objects (req/s; p50 ms):")
    print(f"{'operation':34} {'duebridge':>16} {'radicale':>16} {'xandikos':>16} {'vs radicale':>12} {'vs xandikos':>12}")
    for name in ops:
        vals = [op(rep, name, "per_second") for rep in (d, r, x)]
        p50 = [op(rep, name, "p50_ms") for rep in (d, r, x)]
        cell = lambda v, p: f"{v:8.1f} ({p:6.1f})" if v else f"{'-':>16}"
        print(f"{name:34} {cell(vals[0], p50[0])} {cell(vals[1], p50[1])} {cell(vals[2], p50[2])} {ratio(vals[0], vals[1]):>12} {ratio(vals[0], vals[2]):>12}")
    # Server CPU per request: each server's own CPU time (process tree) over
    # the run divided by the requests it answered; the client on the same
    # cores does not enter it. Ratio = how many times cheaper duebridge is.
    print("\nCalDAV, server CPU per request (µs; cores busy):")
    print(f"{'operation':34} {'duebridge':>16} {'radicale':>16} {'xandikos':>16} {'vs radicale':>12} {'vs xandikos':>12}")
    for name in ops:
        us = [opfig(rep, name, "server CPU per request") for rep in (d, r, x)]
        share = [opfig(rep, name, "server CPU share") for rep in (d, r, x)]
        cell = lambda v, c: f"{v:8.0f} ({c:4.2f})" if v and c is not None else f"{'-':>16}"
        print(f"{name:34} {cell(us[0], share[0])} {cell(us[1], share[1])} {cell(us[2], share[2])} {ratio(us[1], us[0]):>12} {ratio(us[2], us[0]):>12}")
s1 = None
for f in sorted(os.listdir(out)):
    if f.startswith("sync-") and f.endswith(".json"):
        rep = load(f)
        n = rep["params"]["tasks"]
        p50 = op(rep, "sync-collection", "p50_ms")
        rate = op(rep, "sync-collection", "per_second")
        if n == 1000:
            s1 = p50
        print(f"incremental sync, {n:>6} objects: {rate:8.1f}/s, p50 {p50:.2f} ms" + (f"  ({p50 / s1:.2f}x of 1k)" if s1 and n != 1000 else ""))
l, dv = load("load-duebridge.json"), load("imap-dovecot.json")
if l or dv:
    print("\nIMAP, 1,000 idling connections (ms); duebridge memory from the 10,000-connection run:")
    for label, rep in (("duebridge (webhook)", l), ("dovecot (APPEND)", dv)):
        if not rep:
            continue
        ex = [s for s in rep["ops"] if "→ IDLE EXISTS" in s["name"] and "ack" in s["name"].split("→")[0]]
        if ex:
            e = ex[0]
            print(f"  {label:22} trigger ack → EXISTS p50 {e['p50_ms']:.2f}  p99 {e['p99_ms']:.2f}  missing {e['errors']}")
        per = fig(load("idle-duebridge.json") or rep, "server PSS (process tree) per idle") if rep is l else fig(rep, "server PSS (process tree) per idle")
        print(f"  {label:22} memory per idle connection {per:.1f} KiB (PSS, process tree)" if per else "")
    if l and dv:
        a, b = op(l, "webhook ack → IDLE EXISTS", "p99_ms"), op(dv, "APPEND ack → IDLE EXISTS", "p99_ms")
        ma, mb = fig(load("idle-duebridge.json") or l, "server PSS (process tree) per idle"), fig(dv, "server PSS (process tree) per idle")
        if a and b:
            print(f"  EXISTS p99: dovecot / duebridge = {b / a:.0f}x")
        if ma and mb:
            print(f"  memory per idle connection: dovecot / duebridge = {mb / ma:.1f}x")
for f in ("load-duebridge.json", "idle-duebridge.json", "phones-duebridge.json", "dav-duebridge.json"):
    rep = load(f)
    if rep:
        for t in rep.get("targets") or []:
            print(f"  {'met   ' if t['met'] else 'MISSED'} {t['name']}: want {t['want']}, got {t['got']}")
EOF
echo "JSON reports: $OUT" >&2
