#!/usr/bin/env bash
# Runs the Go test suite with the wall clock moved ahead (default: three
# years), to prove that no test depends on today's date. It builds with an
# -overlay that replaces the standard library's time.Now by one that adds a
# fixed offset to the wall reading; monotonic readings (time.Since, timers)
# are untouched, so timeouts and sleeps behave as usual. Every Go package of
# the build, the standard library included, sees the moved clock.
#
# Usage: .ci/future.sh [years] [go test args...]   (default: 3 ./...)
set -euo pipefail
cd "$(dirname "$0")/.."

years=3
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
	years=$1
	shift
fi
[ $# -gt 0 ] || set -- ./...

goroot=$(go env GOROOT)
src="$goroot/src/time/time.go"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The offset is a whole number of days, so wall times of day stay the same.
offset=$((years * 365 * 86400))
# Patch the one line of Now() that turns the runtime's reading into seconds
# since year 1; refuse to run if the standard library changed shape.
line='	sec, nsec, mono := runtimeNow()'
grep -qxF "$line" "$src" || { echo "future.sh: $src has no line '$line'; update the script" >&2; exit 1; }
awk -v line="$line" -v off="$offset" '
	$0 == line && !done { print; print "\tsec += " off " // .ci/future.sh: the clock moved ahead"; done = 1; next }
	{ print }' "$src" >"$work/time.go"
printf '{"Replace":{"%s":"%s"}}\n' "$src" "$work/time.go" >"$work/overlay.json"

echo "future.sh: wall clock moved ahead by $years years ($offset s)"
# Check that the overlay took: a tiny program prints the year it sees.
mkdir -p "$work/probe"
printf 'package main\nimport ("fmt";"time")\nfunc main(){fmt.Println(time.Now().Year())}\n' >"$work/probe/main.go"
seen=$(cd "$work/probe" && GO111MODULE=off go run -overlay="$work/overlay.json" main.go)
want=$(( $(date -u +%Y) + years ))
if [ "$seen" -lt $((want - 1)) ]; then
	echo "future.sh: overlay not applied (a program sees year $seen)" >&2
	exit 1
fi
echo "future.sh: a program now sees year $seen"
go test -count=1 -overlay="$work/overlay.json" "$@"
