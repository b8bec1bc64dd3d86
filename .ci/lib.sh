# .ci/lib.sh: what the client scripts share. Source it after setting NAME:
#   NAME=todoman; . "$(dirname "$0")/lib.sh"
# It moves to the repository root, and defines log/ok/bad with the pass and
# fail counts, need (install Debian packages once, as root), a temp work dir
# whose started processes (pids+=(...)) are stopped in reverse order on exit,
# and free_port.

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
PY=/usr/bin/python3

log() { echo "$NAME: $*" >&2; }
passed=0
failed=0
ok() {
	echo "ok   $*"
	passed=$((passed + 1))
}
bad() {
	echo "FAIL $*"
	failed=$((failed + 1))
}

# need PKG...: installs the Debian packages not yet installed.
need() {
	local missing=() p
	for p in "$@"; do
		dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" != 0 ]; then
		log "must run as root to install: ${missing[*]}"
		exit 1
	fi
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

work=$(mktemp -d)
pids=()
cleanup() {
	local i
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill "${pids[i]}" 2>/dev/null || true
		wait "${pids[i]}" 2>/dev/null || true
	done
	if [ "${KEEP:-}" = 1 ] || [ "$failed" -gt 0 ]; then
		log "kept $work (logs: $work/*.log)"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT

free_port() {
	"$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# build_duebridge: the binary the scripts run, as $work/duebridge.
build_duebridge() {
	log "building duebridge"
	go build -o "$work/duebridge" ./cmd/duebridge
}

# start_duebridge: validates $work/duebridge.yaml, serves it in the
# background (stopped on exit) and waits until $base/healthz answers.
start_duebridge() {
	"$work/duebridge" check-config --config "$work/duebridge.yaml" >&2
	"$work/duebridge" serve --config "$work/duebridge.yaml" >"$work/server.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do
		curl -fsS "$base/healthz" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	log "duebridge did not come up:"
	tail -20 "$work/server.log" >&2
	exit 1
}
