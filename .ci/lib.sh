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

# configure_duebridge [--callback] USER...: picks $http_port and $imap_port
# (and $cb_port with --callback), $base, the webhook $secret and a random
# password per user ($alice_pw, ...), builds duebridge and writes
# $work/duebridge.yaml: those users (USER@example.com), one source "tracker"
# (calling back to 127.0.0.1:$cb_port/callback with --callback) and lead
# times 24h and 1h. Append to the file for more.
configure_duebridge() {
	local callback= u pwvar hash
	if [ "${1:-}" = --callback ]; then
		callback=1
		shift
		cb_port=$(free_port)
	fi
	http_port=$(free_port)
	imap_port=$(free_port)
	base="http://127.0.0.1:$http_port"
	secret="ci-secret-$(openssl rand -hex 8)"
	build_duebridge
	{
		printf 'data_dir: %s\nhttp:\n  listen: 127.0.0.1:%s\n  public_url: %s\n' "$work/data" "$http_port" "$base"
		printf 'imap:\n  listen: 127.0.0.1:%s\nusers:\n' "$imap_port"
		for u; do
			pwvar="${u}_pw"
			printf -v "$pwvar" '%s' "$u-$(openssl rand -hex 6)"
			hash=$(printf %s "${!pwvar}" | "$work/duebridge" hash-password)
			printf '  - name: %s\n    email: %s@example.com\n    password_hash: "%s"\n' "$u" "$u" "$hash"
		done
		printf 'sources:\n  - name: tracker\n    secret: %s\n' "$secret"
		[ -z "$callback" ] || printf '    callback_url: http://127.0.0.1:%s/callback\n' "$cb_port"
		printf 'notifications:\n  lead_times: [24h, 1h]\n'
	} >"$work/duebridge.yaml"
}

# task_dates: $now, and due dates two days ($due1, a time) and four days
# ($due2, a date) from now, so the scripts pass on any day.
task_dates() {
	now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	due1=$(date -u -d '+2 days' +%Y-%m-%dT%H:00:00Z)
	due2=$(date -u -d '+4 days' +%Y-%m-%d)
}

# post_tasks BODY: sends BODY to source "tracker" signed with $secret and
# prints the answer.
post_tasks() {
	local sig
	sig=$(printf %s "$1" | openssl dgst -sha256 -hmac "$secret" -hex | sed 's/^.*= //')
	curl -sS -m 30 -X POST -H "Content-Type: application/json" -H "X-Duebridge-Signature: sha256=$sig" \
		--data-binary "$1" "$base/hooks/tracker"
}
