#!/usr/bin/env bash
# bench/idle100k.sh: 100,000 idle IMAP connections on this node.
#
# One process here may hold at most RLIMIT_NOFILE (20,000) sockets, so the
# connections are spread over REPLICAS duebridge replicas on one PostgreSQL
# (.ci/postgres.sh starts it; the replicas share it and push to each other
# through LISTEN/NOTIFY), each holding at most 19,000, and one load-tool
# process per replica, each binding its connections to its own loopback
# source addresses (--source-addrs; an address has ~28,000 ephemeral ports).
# Load process i idles on replica i but sends its webhooks to replica i+1,
# so every push it measures crosses replicas through NOTIFY.
#
# The load processes open their connections (logged in, SELECT INBOX, IDLE),
# report through --idle-ready and wait; when all are open the script reads
# each replica's RSS (/proc) and goroutines (/metrics) and lets them drive
# RATE webhooks/s each for DURATION (--idle-go). Each load process then waits
# up to 10 s for the last EXISTS and audits any still missing (lost
# announcement, trigger that stored nothing, dead connection); those notes go
# into the summary. Every process it started is
# stopped by pid on exit (the PostgreSQL cluster too with PG_STOP=1, if this
# script started it).
#
# Runs as root on Debian (.ci/postgres.sh installs PostgreSQL if missing).
# Settings (environment):
#   CONNS     idle connections in all           (default 100000)
#   REPLICAS  duebridge replicas = load processes (default 6; CONNS/REPLICAS ≤ 19000)
#   USERS     users per replica                 (default 1000)
#   RATE      webhooks/s per load process       (default 5)
#   DURATION  measured phase                    (default 60s)
#   MAX_TIME  bound on the whole run            (default 20m)
#   OUT       directory for logs and JSON       (default: a new temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"

CONNS=${CONNS:-100000}
REPLICAS=${REPLICAS:-6}
USERS=${USERS:-1000}
RATE=${RATE:-5}
DURATION=${DURATION:-60s}
MAX_TIME=${MAX_TIME:-20m}
OUT=${OUT:-$(mktemp -d /tmp/idle100k.XXXXXX)}
mkdir -p "$OUT"
log() { echo "idle100k: $*" >&2; }

per=$(((CONNS + REPLICAS - 1) / REPLICAS))
if [ "$per" -gt 19000 ]; then
	log "$per connections per replica: over the 19,000 one process can hold under RLIMIT_NOFILE $(ulimit -n); raise REPLICAS"
	exit 2
fi
if [ "$REPLICAS" -gt 200 ]; then
	log "at most 200 replicas (source addresses 127.0.<i+1>.1-2)"
	exit 2
fi
conns_per_user=$(((per + USERS - 1) / USERS + 5))

pids=()
pg_started=
cleanup() {
	local i
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill "${pids[i]}" 2>/dev/null || true
	done
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		wait "${pids[i]}" 2>/dev/null || true
	done
	if [ -n "$pg_started" ] && [ "${PG_STOP:-}" = 1 ]; then
		pg_ctlcluster "$pg_version" "$pg_cluster" stop -m fast || true
	fi
	log "logs and reports in $OUT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# PostgreSQL: a database of our own on the CI cluster, fresh every run.
pg_version=$(ls /usr/lib/postgresql/ 2>/dev/null | sort -n | tail -1 || true)
pg_cluster=${DUEBRIDGE_CI_PG_CLUSTER:-duebridge}
if [ -n "$pg_version" ] && ! pg_lsclusters -h 2>/dev/null | awk -v v="$pg_version" -v c="$pg_cluster" '$1==v && $2==c && $4=="online" {f=1} END {exit !f}'; then
	pg_started=1
fi
# Not exported: duebridge reads DUEBRIDGE_* variables as config keys.
db=duebridge_idle100k
eval "$(DUEBRIDGE_CI_PG_DB=$db sh .ci/postgres.sh)"
pg_version=$(ls /usr/lib/postgresql/ | sort -n | tail -1)
runuser -u postgres -- psql -X -q -h /var/run/postgresql -p "${DUEBRIDGE_CI_PG_PORT:-5433}" -d postgres \
	-c "DROP DATABASE IF EXISTS $db WITH (FORCE)" \
	-c "CREATE DATABASE $db OWNER ${DUEBRIDGE_CI_PG_USER:-duebridge}"

log "building into $OUT"
go build -o "$OUT/duebridge" ./cmd/duebridge
go build -o "$OUT/duebridge-load" ./cmd/duebridge-load
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

# One config for all replicas: the same users, source and secret; only the
# listeners and the instance name differ. Cheap bcrypt hashes: the run
# measures idle connections, not password hashing (each user's first login
# on a replica pays it once).
password=idle-password
secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat >"$OUT/hash.go" <<'EOF'
package main

import (
	"fmt"
	"os"

	"golang.org/x/crypto/bcrypt"
)

func main() {
	h, err := bcrypt.GenerateFromPassword([]byte(os.Args[1]), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(h))
}
EOF
hash=$(go run "$OUT/hash.go" "$password")
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
users_yaml="$OUT/users.yaml"
{
	echo "users:"
	for ((r = 0; r < REPLICAS; r++)); do
		for ((u = 0; u < USERS; u++)); do
			printf '  - name: "r%du%05d"\n    email: "r%du%05d@load.test"\n    password_hash: "%s"\n' "$r" "$u" "$r" "$u" "$hash"
		done
	done
} >"$users_yaml"

http_ports=() imap_ports=() rpids=()
for ((r = 0; r < REPLICAS; r++)); do
	hp=$(free_port) ip=$(free_port)
	http_ports+=("$hp") imap_ports+=("$ip")
	cfg="$OUT/r$r.yaml"
	{
		echo "instance: r$r"
		echo "data_dir: \"$OUT/data\""
		echo "store: postgres"
		echo "postgres_url: \"$TEST_DUEBRIDGE_POSTGRES\""
		echo "http:"
		echo "  listen: 127.0.0.1:$hp"
		echo "  public_url: http://127.0.0.1:$hp"
		echo "imap:"
		echo "  listen: 127.0.0.1:$ip"
		echo "limits:"
		echo "  imap_conns_per_user: $conns_per_user"
		echo "sources:"
		echo "  - name: idle"
		echo "    secret: \"$secret\""
		cat "$users_yaml"
	} >"$cfg"
	"$OUT/duebridge" serve --config "$cfg" >"$OUT/r$r.log" 2>&1 &
	pids+=($!) rpids+=($!)
done
for ((r = 0; r < REPLICAS; r++)); do
	for i in $(seq 300); do
		curl -fsS -o /dev/null "http://127.0.0.1:${http_ports[r]}/readyz" 2>/dev/null && break
		kill -0 "${rpids[r]}" 2>/dev/null || { log "replica r$r exited; see $OUT/r$r.log"; tail -5 "$OUT/r$r.log" >&2; exit 1; }
		sleep 0.2
	done
	curl -fsS -o /dev/null "http://127.0.0.1:${http_ports[r]}/readyz" || { log "replica r$r not ready"; exit 1; }
done
log "$REPLICAS replicas ready (pids ${rpids[*]}), $per connections each, $USERS users each"

metric() { # metric REPLICA NAME: the sum of NAME's samples on that replica's /metrics
	curl -fsS "http://127.0.0.1:${http_ports[$1]}/metrics" 2>/dev/null |
		awk -v n="$2" '$1 == n || index($1, n "{") == 1 {s += $NF} END {printf "%d", s}'
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

rss0=() g0=()
for ((r = 0; r < REPLICAS; r++)); do
	rss0+=("$(rss_kib "${rpids[r]}")") g0+=("$(metric "$r" go_goroutines)")
done

rm -f "$OUT/go"
lpids=()
left=$CONNS
for ((r = 0; r < REPLICAS; r++)); do
	n=$((left < per ? left : per))
	left=$((left - n))
	hook=$(((r + 1) % REPLICAS))
	"$OUT/duebridge-load" --target "http://127.0.0.1:${http_ports[hook]}" --imap "127.0.0.1:${imap_ports[r]}" \
		--pid "${rpids[r]}" --source idle --secret "$secret" --users "$USERS" --user-format "r${r}u%05d" \
		--password "$password" --tasks 0 --dav 0 --idle "$n" --idle-parallel 16 \
		--source-addrs "127.0.$((r + 1)).1,127.0.$((r + 1)).2" \
		--idle-ready "$OUT/ready.$r" --idle-go "$OUT/go" \
		--rate "$RATE" --duration "$DURATION" --max-time "$MAX_TIME" --quiet \
		--label "r$r" --json "$OUT/load$r.json" >"$OUT/load$r.out" 2>"$OUT/load$r.log" &
	pids+=($!) lpids+=($!)
done

# Wait (bounded by MAX_TIME) until every load process has its connections open.
t0=$(date +%s)
case $MAX_TIME in
*m) limit=$((t0 + ${MAX_TIME%m} * 60)) ;;
*s) limit=$((t0 + ${MAX_TIME%s})) ;;
*) log "MAX_TIME $MAX_TIME: want minutes (20m) or seconds (900s)"; exit 2 ;;
esac
while :; do
	ready=0 open=0
	for ((r = 0; r < REPLICAS; r++)); do
		if [ -f "$OUT/ready.$r" ]; then
			ready=$((ready + 1)) open=$((open + $(cat "$OUT/ready.$r")))
		elif ! kill -0 "${lpids[r]}" 2>/dev/null; then
			log "load process $r exited early; see $OUT/load$r.log"
			tail -5 "$OUT/load$r.log" >&2
			exit 1
		fi
	done
	[ "$ready" = "$REPLICAS" ] && break
	if [ "$(date +%s)" -ge "$limit" ]; then
		log "not all connections opened within $MAX_TIME"
		exit 1
	fi
	idling=0
	for ((r = 0; r < REPLICAS; r++)); do idling=$((idling + $(metric "$r" duebridge_imap_idling))); done
	log "$idling connections in IDLE ($ready of $REPLICAS load processes done)"
	sleep 10
done
log "$open connections open in $(($(date +%s) - t0)) s"
sleep 5 # let the last IDLEs settle

# The figures at full size, before the measured phase.
{
	echo "# bench/idle100k.sh $(date -u +%FT%TZ) commit $commit: CONNS=$CONNS REPLICAS=$REPLICAS USERS=$USERS RATE=$RATE DURATION=$DURATION"
	echo "# load average: $(cut -d' ' -f1-3 /proc/loadavg)"
	printf '%-8s %8s %8s %10s %12s %10s %10s %9s %9s\n' replica conns idling rss_mib kib_per_conn goroutines g_per_conn heap_mib stack_mib
	tot_rss=0 tot_rss0=0 tot_g=0 tot_g0=0 tot_idle=0 tot_heap=0 tot_stack=0
	for ((r = 0; r < REPLICAS; r++)); do
		rss=$(rss_kib "${rpids[r]}") g=$(metric "$r" go_goroutines) idl=$(metric "$r" duebridge_imap_idling)
		c=$(metric "$r" duebridge_imap_connections)
		heap=$(metric "$r" go_memstats_heap_inuse_bytes) stack=$(metric "$r" go_memstats_stack_inuse_bytes)
		tot_heap=$((tot_heap + heap)) tot_stack=$((tot_stack + stack))
		tot_rss=$((tot_rss + rss)) tot_rss0=$((tot_rss0 + rss0[r])) tot_g=$((tot_g + g)) tot_g0=$((tot_g0 + g0[r]))
		tot_idle=$((tot_idle + idl))
		awk -v r="r$r" -v c="$c" -v i="$idl" -v rss="$rss" -v rss0="${rss0[r]}" -v g="$g" -v g0="${g0[r]}" -v h="$heap" -v s="$stack" 'BEGIN {
			printf "%-8s %8d %8d %10.0f %12.1f %10d %10.2f %9.0f %9.0f\n", r, c, i, rss/1024, (rss-rss0)/(i>0?i:1), g, (g-g0)/(i>0?i:1), h/2^20, s/2^20 }'
	done
	awk -v i="$tot_idle" -v rss="$tot_rss" -v rss0="$tot_rss0" -v g="$tot_g" -v g0="$tot_g0" -v h="$tot_heap" -v s="$tot_stack" 'BEGIN {
		printf "%-8s %8s %8d %10.0f %12.1f %10d %10.2f %9.0f %9.0f\n", "total", "", i, rss/1024, (rss-rss0)/(i>0?i:1), g, (g-g0)/(i>0?i:1), h/2^20, s/2^20 }'
} | tee "$OUT/summary.txt"

touch "$OUT/go"
log "measured phase: $REPLICAS × $RATE webhooks/s for $DURATION"
fail=0
for ((r = 0; r < REPLICAS; r++)); do
	wait "${lpids[r]}" || { log "load process $r failed; see $OUT/load$r.log"; fail=1; }
done
{
	echo
	echo "push (webhook to replica i+1, EXISTS on replica i's connections), per load process:"
	for ((r = 0; r < REPLICAS; r++)); do
		grep -E 'webhook (ack|send) → IDLE EXISTS|  webhook ack  |^note: .*(EXISTS not pushed|after the last ack)' "$OUT/load$r.out" | sed "s/^/r$r /" || true
	done
	echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$OUT/summary.txt"
exit "$fail"
