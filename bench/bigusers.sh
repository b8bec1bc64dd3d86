#!/usr/bin/env bash
# bench/bigusers.sh OLD_BIN NEW_BIN N... — what a config of N users costs two
# duebridge binaries, run one after the other on the same file: check-config
# (CPU, peak RSS), serve on an empty data directory to "duebridge serving"
# (CPU, RSS), 30 s on, and a reload after one line is appended (CPU of the
# reload, peak RSS during it: VmHWM is reset just before). The file is in
# the form cmd/duebridge-load writes (every value double-quoted, one app
# password a user): about 330 bytes a user.
set -euo pipefail
old=$1 new=$2
shift 2
work=$(mktemp -d /tmp/bigusers.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
tck=$(getconf CLK_TCK)

gen() { python3 "$(dirname "$0")/bigconfig.py" "$1" "$2"; } # gen N FILE
cpu() { awk -v t="$tck" '{printf "%.1f", ($14+$15)/t}' "/proc/$1/stat"; }
mem() { awk '/^Vm(RSS|HWM)/{printf "%s %d MB  ", $1, $2/1024}' "/proc/$1/status"; }
waitlog() { # waitlog FILE PATTERN COUNT
	until [ "$(grep -c "$2" "$1")" -ge "$3" ]; do sleep 0.2; done
}

for n in "$@"; do
	dir=$work/u$n
	mkdir -p "$dir"
	cfg=$dir/duebridge.yaml
	gen "$n" "$cfg"
	size=$(stat -c %s "$cfg")
	echo "# $n users, $((size / 1000000)) MB"
	for which in old new; do
		bin=${!which}
		echo "== $which ($bin), load average $(cut -d' ' -f1-3 /proc/loadavg)"
		/usr/bin/time -f "check-config: %U s user + %S s sys CPU, peak RSS %M KB, %e s wall" \
			"$bin" check-config --config "$cfg" >/dev/null
		rm -rf "$dir/data"
		"$bin" serve --config "$cfg" >"$dir/log" 2>&1 &
		pid=$!
		t0=$(date +%s.%N)
		waitlog "$dir/log" "duebridge serving" 1
		echo "serving: $(cpu $pid) s CPU, $(mem $pid) $(echo "$(date +%s.%N) - $t0" | bc) s wall"
		sleep "${SETTLE:-30}"
		echo "${SETTLE:-30} s later: $(cpu $pid) s CPU, $(mem $pid)"
		c0=$(cpu $pid)
		echo 5 >"/proc/$pid/clear_refs" # VmHWM from here on
		t0=$(date +%s.%N)
		echo "# reload $(date +%s)" >>"$cfg"
		waitlog "$dir/log" "config reloaded" 1
		echo "reload: $(echo "$(cpu $pid) - $c0" | bc) s CPU, $(mem $pid) $(echo "$(date +%s.%N) - $t0" | bc) s wall (debounce included)"
		kill "$pid"
		wait "$pid" || true
		pid=
		truncate -s "$size" "$cfg"
	done
done
