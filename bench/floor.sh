#!/usr/bin/env bash
# bench/floor.sh — the floor of the issue 15 capacity run: how many phone
# polls/s this machine keeps up with when the server does nothing but TLS
# and HTTP and answers one recorded home answer. Same phones, same client
# code, same open-loop schedule and keep-up verdict as bench/capacity.sh.
#
#   bash bench/floor.sh                                  # 1,111 polls/s, 120 s each
#   RATES="900 1111 1400" WARM=30s bash bench/floor.sh   # a short ladder
#   FLOORS=haproxy OURS=0 bash bench/floor.sh            # HAProxy only
#
# Knobs (environment):
#   RATES        home polls/s to try, in order (default 1111 = 1,000,000
#                phones / 900 s)
#   WARM         timed phase after every phone has polled once (default 120s)
#   FLOORS       floors to run: go (the load tool's floor-serve: duebridge's
#                TLS configuration, Go's net/http) and/or haproxy
#                (/usr/sbin/haproxy; OpenSSL 3.0 without ML-KEM, so its
#                handshakes are cheaper than Go's) (default "go haproxy")
#   OURS         1: at each rate also run duebridge itself on the same
#                home-only schedule (--phone-change 0: the floor's lists never
#                change, so its polls are one PROPFIND each), side by side
#                with the floors (default 1)
#   PHONE_USERS  distinct phones taking turns (default 5000)
#   PREP         bound on the first poll of every phone (default 5m)
#   OUT          directory for the JSON reports (default: a temp dir)
#   STOP         1: a kind leaves the ladder at its first rate not kept up;
#                0: every kind runs every rate (on a shared machine the CPU
#                per poll is the figure to read) (default 1)
#
# Each floor run starts duebridge (--start, TLS with a dev CA, device
# passwords), records one phone's home answer with the phones' client,
# stops duebridge and starts the floor as a separate process, so the
# floor's CPU and the phones' are measured apart. A floor drops out of the
# ladder at the first rate it does not keep up with (every scheduled poll
# ran, ≥ 98 % completed, no errors, poll p99 ≤ 1 s). Load average is
# printed before and after each run: other work shares the same cores.
# Each run also prints its CPU ceiling: the polls/s this machine's cores
# could carry at the run's server + load tool CPU per poll, if nothing else
# ran (nproc × 1000 ms ÷ both); on a busy machine that, not the verdict, is
# the floor.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RATES=${RATES:-1111}
WARM=${WARM:-120s}
FLOORS=${FLOORS:-go haproxy}
OURS=${OURS:-1}
PHONE_USERS=${PHONE_USERS:-5000}
PREP=${PREP:-5m}
STOP=${STOP:-1}
WORK=$(mktemp -d /tmp/duebridge-floor.XXXXXX)
OUT=${OUT:-$WORK/results}
mkdir -p "$OUT"
trap 'rm -rf "$WORK/bin"' EXIT

echo "building at $(git -C "$ROOT" rev-parse --short HEAD) into $WORK/bin" >&2
(cd "$ROOT" && go build -o "$WORK/bin/duebridge" ./cmd/duebridge && go build -o "$WORK/bin/duebridge-load" ./cmd/duebridge-load)

kinds=()
[[ $OURS == 1 ]] && kinds+=(duebridge)
for f in $FLOORS; do kinds+=("$f"); done
declare -A out_of_ladder=()

for rate in $RATES; do
	phones=$(awk -v r="$rate" 'BEGIN { printf "%d", r * 900 }')
	for kind in "${kinds[@]}"; do
		[[ -n ${out_of_ladder[$kind]:-} ]] && continue
		floor=()
		[[ $kind != duebridge ]] && floor=(--floor "$kind")
		echo "=== $kind: $rate polls/s ($phones phones), warm $WARM; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
		set +e
		"$WORK/bin/duebridge-load" --bin "$WORK/bin/duebridge" --phones "$phones" --phone-users "$PHONE_USERS" \
			--phone-rate "$rate" --duration "$WARM" "${floor[@]}" --phone-change 0 --tls --device-passwords --cold-compare=false \
			--returning 0 --phone-cold "$PREP" --phone-prep-workers 16 --max-inflight 2048 --max-time 1h \
			--quiet --json "$OUT/floor-$kind-$rate.json" >"$OUT/floor-$kind-$rate.txt"
		rc=$?
		set -e
		echo "=== load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
		grep -E "timed phase: (server|load tool) CPU per phone poll|completed home polls/s|phone poll \(PROPFIND" "$OUT/floor-$kind-$rate.txt" >&2 || true
		awk -v n="$(nproc)" '/timed phase: server CPU per phone poll/ { s = $(NF-1) } /timed phase: load tool CPU per phone poll/ { t = $(NF-1) }
			END { if (s + t > 0) printf "  CPU ceiling: %d cores ÷ (%.3f + %.3f ms) = %.0f polls/s\n", n, s, t, n * 1000 / (s + t) }' "$OUT/floor-$kind-$rate.txt" >&2
		grep -E '^note: phones: .*keep' "$OUT/floor-$kind-$rate.txt" >&2 || true
		if [[ $STOP == 1 ]] && { [[ $rc -ne 0 ]] || grep -q '^note: phones: .*does NOT keep up' "$OUT/floor-$kind-$rate.txt"; }; then
			echo "=== $kind: $rate polls/s not kept up; it leaves the ladder" >&2
			out_of_ladder[$kind]=1
		fi
	done
done
echo "reports in $OUT" >&2
