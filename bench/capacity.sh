#!/usr/bin/env bash
# bench/capacity.sh — the issue 15 capacity run: can one node keep up with
# a population of iPhones polling every 15 minutes, over TLS with device
# passwords, warm and in the first minutes after a restart?
#
#   bash bench/capacity.sh                        # full length: 1,111 polls/s
#                                                 # (1,000,000 phones), 5 min
#                                                 # warm, 15 min after a restart
#   WARM=60s COLD=120s bash bench/capacity.sh     # shorter
#   RATES="200 400 800" WARM=60s COLD=0 bash bench/capacity.sh   # a ladder
#
# Knobs (environment):
#   RATES        home polls/s to try, in order (default 1111 = 1,000,000
#                phones / 900 s); PHONES is what the report calls the
#                population (default rate × 900)
#   WARM         timed phase after every phone has polled once (default 300s)
#   COLD         after WARM: server killed (SIGKILL) and started again, then
#                the same open-loop schedule for COLD from its cold caches
#                (no remembered answers; TLS ticket keys only with TICKETS=1);
#                0 skips it
#                (default 900s)
#   PHONE_USERS  distinct phones (users, each with 10 lists and a device
#                password) that take turns (default 20000; seeding them
#                through the webhook is what bounds this, see bench/README.md)
#   PREP         bound on the first poll of every phone (default 10m)
#   OUT          directory for the JSON reports (default: a temp dir)
#   PHONE_CHANGE share of polls that find a changed list and then sync it
#                and fetch its changes, two more connections each (default
#                0.2; 0 = home polls only, what bench/floor.sh's floors can
#                answer)
#   SERVER_GOGC  GOGC for the server (default: unset, Go's 100); the load
#                tool sets its own with --tool-gogc (400)
#   TICKETS      1: the server seals session tickets with a key file
#                (tls.ticket_keys_file), so the phones resume across the
#                restart; 0: keys in memory only, every phone's first poll
#                after the restart is a full handshake (default 0)
#
# Each run starts its own server (--start) on loopback with a dev CA, and
# prints per phase the keep-up verdict: every scheduled poll ran, ≥ 98 %
# completed, no errors, poll p99 ≤ 1 s. A run stops at the first rate that
# does not keep up warm. Load average is printed before and after each run:
# other work on the machine shares the same cores.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RATES=${RATES:-1111}
WARM=${WARM:-300s}
COLD=${COLD:-900s}
PHONE_USERS=${PHONE_USERS:-20000}
PREP=${PREP:-10m}
PHONE_CHANGE=${PHONE_CHANGE:-0.2}
TICKETS=${TICKETS:-0}
WORK=$(mktemp -d /tmp/duebridge-capacity.XXXXXX)
OUT=${OUT:-$WORK/results}
mkdir -p "$OUT"
trap 'rm -rf "$WORK/bin"' EXIT

echo "building at $(git -C "$ROOT" rev-parse --short HEAD) into $WORK/bin" >&2
(cd "$ROOT" && go build -o "$WORK/bin/duebridge" ./cmd/duebridge && go build -o "$WORK/bin/duebridge-load" ./cmd/duebridge-load)

# seconds of a Go duration like 90s, 5m, 1m30s
secs() { local d=$1 s=0; [[ $d =~ ([0-9]+)m ]] && s=$((s + 60 * BASH_REMATCH[1])); [[ $d =~ ([0-9]+)s ]] && s=$((s + BASH_REMATCH[1])); echo $s; }

for rate in $RATES; do
	phones=${PHONES:-$(awk -v r="$rate" 'BEGIN { printf "%d", r * 900 }')}
	restart=()
	[[ $(secs "$COLD") -gt 0 ]] && restart=(--restart-duration "$COLD")
	[[ $TICKETS == 1 ]] && restart+=(--tls-ticket-keys)
	maxtime=$(( $(secs "$WARM") + $(secs "$COLD") + $(secs "$PREP") + 1800 ))
	echo "=== $rate polls/s ($phones phones, $PHONE_CHANGE of polls find a change), warm $WARM, after restart $COLD, server GOGC ${SERVER_GOGC:-default}, ticket key file $TICKETS; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
	set +e
	env ${SERVER_GOGC:+GOGC=$SERVER_GOGC} "$WORK/bin/duebridge-load" --bin "$WORK/bin/duebridge" --phones "$phones" --phone-users "$PHONE_USERS" \
		--phone-rate "$rate" --phone-change "$PHONE_CHANGE" --duration "$WARM" "${restart[@]}" --tls --device-passwords --cold-compare=false \
		--returning 0 --phone-cold "$PREP" --phone-prep-workers 16 --max-inflight 2048 --max-time "${maxtime}s" \
		--quiet --json "$OUT/capacity-$rate.json" | tee "$OUT/capacity-$rate.txt"
	rc=${PIPESTATUS[0]}
	set -e
	echo "=== load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
	grep -E "keeps up|does NOT keep up" "$OUT/capacity-$rate.txt" | grep '^note' >&2 || true
	if [[ $rc -ne 0 ]] || grep -q '^note: phones: does NOT keep up' "$OUT/capacity-$rate.txt"; then
		echo "=== $rate polls/s: not kept up warm; stopping the ladder" >&2
		break
	fi
done
echo "reports in $OUT" >&2
