#!/bin/sh
# Runs every Go fuzz target in the module for a set time each and prints,
# per target, the executions and whether it found a failing input.
#
#   fuzz/run.sh [-t 60s] [-p ./webhook/] [-j 1]
#
# -t  time per target (go test -fuzztime; default 60s)
# -p  only packages matching this go list pattern (default ./...)
# -j  fuzzing workers per target (-parallel; default 1, the machine is shared)
#
# Targets are found with `go test -list 'Fuzz.*'` per package, so targets
# added anywhere are included. A failing input is kept under the package's
# testdata/fuzz/<Target>/ (go test then runs it as a seed: commit it with
# the fix). Minimizing an input gets FUZZ_MINIMIZE (default 5s): the
# default 60s per interesting input left the slower targets minimizing most
# of the time. The log of each run is in $FUZZ_LOG_DIR (default /tmp/fuzzlogs).
set -eu
cd "$(dirname "$0")/.."
time=60s pattern=./... par=1
while getopts t:p:j: o; do
	case $o in
	t) time=$OPTARG ;;
	p) pattern=$OPTARG ;;
	j) par=$OPTARG ;;
	*) exit 2 ;;
	esac
done
logs=${FUZZ_LOG_DIR:-/tmp/fuzzlogs}
mkdir -p "$logs"
status=0
printf '%-45s %14s %s\n' TARGET EXECUTIONS RESULT
for pkg in $(go list "$pattern"); do
	targets=$(go test -list 'Fuzz.*' "$pkg" 2>/dev/null | grep '^Fuzz' || true)
	for t in $targets; do
		log="$logs/$(echo "$pkg" | tr / _)_$t.log"
		if go test -run '^$' -fuzz "^$t\$" -fuzztime "$time" -fuzzminimizetime "${FUZZ_MINIMIZE:-5s}" -parallel "$par" "$pkg" >"$log" 2>&1; then
			result=ok
		else
			result="FAILED (see $log)"
			status=1
		fi
		# The last progress line carries the total: "execs: 123456 (...)".
		execs=$(grep -o 'execs: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
		printf '%-45s %14s %s\n' "${pkg#github.com/duebridge/duebridge/}.$t" "${execs:-?}" "$result"
	done
done
exit $status
