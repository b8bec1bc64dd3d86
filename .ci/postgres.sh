#!/bin/sh
# .ci/postgres.sh: a throw-away PostgreSQL for duebridge's store tests.
#
# Run as root on a Debian (or Ubuntu) machine. It installs PostgreSQL from the
# distribution's packages if it is missing, creates (once) a dedicated cluster
# that listens only on 127.0.0.1, starts it, creates a role and a database, and
# prints the connection URL for the tests:
#
#     eval "$(.ci/postgres.sh)"      # sets TEST_DUEBRIDGE_POSTGRES
#     . .ci/postgres.sh              # the same, from a POSIX shell
#     go test ./store/
#
# It is idempotent: a second run only makes sure the cluster is up (well under
# a second). The cluster is for tests only: fsync is off, so it trades
# durability for speed; never point it at data you want to keep.
#
# Settings (environment, all optional):
#   DUEBRIDGE_CI_PG_CLUSTER  cluster name            (default duebridge)
#   DUEBRIDGE_CI_PG_PORT     port on 127.0.0.1       (default 5433, so a
#                            system cluster on 5432 is left alone)
#   DUEBRIDGE_CI_PG_DB       database name           (default duebridge_test)
#   DUEBRIDGE_CI_PG_USER     role name               (default duebridge)
#   DUEBRIDGE_CI_PG_PASSWORD role password           (default duebridge)
#
# Only the final `export ...` line goes to stdout; progress goes to stderr.

duebridge_ci_pg_setup() (
	set -eu
	cluster=${DUEBRIDGE_CI_PG_CLUSTER:-duebridge}
	port=${DUEBRIDGE_CI_PG_PORT:-5433}
	db=${DUEBRIDGE_CI_PG_DB:-duebridge_test}
	user=${DUEBRIDGE_CI_PG_USER:-duebridge}
	password=${DUEBRIDGE_CI_PG_PASSWORD:-duebridge}

	log() { echo "postgres.sh: $*" >&2; }

	if [ "$(id -u)" != 0 ]; then
		log "must run as root (it installs packages and starts a cluster as the postgres user)"
		return 1
	fi

	# 1. Packages. pg_createcluster and friends come with postgresql-common.
	if ! command -v pg_createcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
		log "installing postgresql"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq >&2
		apt-get install -y -qq --no-install-recommends postgresql >&2
	fi
	version=$(ls /usr/lib/postgresql/ | sort -n | tail -1)
	log "PostgreSQL $version"

	# 2. The cluster, created once. Our settings live in one conf.d file that
	# is rewritten when it differs (then the cluster restarts): loopback only,
	# no TLS, and no fsync (tests only).
	if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$version $cluster"; then
		log "creating cluster $version/$cluster"
		pg_createcluster "$version" "$cluster" --port "$port" >&2
	fi
	conf=/etc/postgresql/$version/$cluster/conf.d/duebridge-ci.conf
	want="# written by duebridge .ci/postgres.sh
listen_addresses = '127.0.0.1'
port = $port
ssl = off
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off"
	restart=
	if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$want" ]; then
		printf '%s\n' "$want" >"$conf"
		restart=1
	fi

	# 3. Running? pg_ctlcluster works with and without systemd.
	status=$(pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1==v && $2==c {print $4}')
	if [ "$status" != online ]; then
		log "starting cluster $version/$cluster on 127.0.0.1:$port"
		pg_ctlcluster "$version" "$cluster" start >&2
	elif [ -n "$restart" ]; then
		log "restarting cluster $version/$cluster on 127.0.0.1:$port (settings changed)"
		pg_ctlcluster "$version" "$cluster" restart >&2
	fi

	# 4. Role and database (the role owns it, so tests may create schemas).
	psql_admin() {
		runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -p "$port" -d postgres "$@"
	}
	i=0
	until psql_admin -tAc 'SELECT 1' >/dev/null 2>&1; do
		i=$((i + 1))
		if [ "$i" -ge 50 ]; then
			log "cluster did not accept connections; see /var/log/postgresql/postgresql-$version-$cluster.log"
			return 1
		fi
		sleep 0.2
	done
	if [ "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$user'")" != 1 ]; then
		log "creating role $user"
		psql_admin -c "CREATE ROLE \"$user\" LOGIN PASSWORD '$password'"
	fi
	if [ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
		log "creating database $db"
		psql_admin -c "CREATE DATABASE \"$db\" OWNER \"$user\""
	fi

	echo "export TEST_DUEBRIDGE_POSTGRES='postgres://$user:$password@127.0.0.1:$port/$db?sslmode=disable'"
)

# Not inside an `if`: bash would ignore the function's set -e there.
duebridge_ci_pg_setup_out=$(duebridge_ci_pg_setup)
duebridge_ci_pg_setup_rc=$?
unset -f duebridge_ci_pg_setup
if [ "$duebridge_ci_pg_setup_rc" = 0 ]; then
	echo "$duebridge_ci_pg_setup_out"
	eval "$duebridge_ci_pg_setup_out"
fi
unset duebridge_ci_pg_setup_out
# The last command's status is the script's (or the `.` command's) status.
[ "$duebridge_ci_pg_setup_rc" = 0 ] && unset duebridge_ci_pg_setup_rc
