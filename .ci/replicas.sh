#!/usr/bin/env bash
# .ci/replicas.sh: three duebridge replicas on one PostgreSQL behind HAProxy
# (docs/operations.md's configuration), under load, with one replica killed (-9) and
# the database restarted; cmd/duebridge-replicas checks that nothing
# acknowledged is lost and no callback or alert mail is sent twice.
# Runs as root on Debian (installs haproxy and PostgreSQL); about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"

if ! command -v haproxy >/dev/null 2>&1; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends haproxy >/dev/null
fi
eval "$(sh .ci/postgres.sh)"
export TEST_DUEBRIDGE_POSTGRES

# The cluster .ci/postgres.sh made; the test stops and starts it mid-load.
version=$(ls /usr/lib/postgresql/ | sort -n | tail -1)
cluster=${DUEBRIDGE_CI_PG_CLUSTER:-duebridge}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; pg_ctlcluster "$version" "$cluster" start 2>/dev/null || true' EXIT
go build -o "$tmp/duebridge" ./cmd/duebridge
go build -o "$tmp/duebridge-replicas" ./cmd/duebridge-replicas
timeout 300 "$tmp/duebridge-replicas" -bin "$tmp/duebridge" -readme docs/operations.md \
	-pg-stop "pg_ctlcluster $version $cluster stop -m fast" \
	-pg-start "pg_ctlcluster $version $cluster start" "$@"
