#!/usr/bin/env bash
# CI: install Debian's PostgreSQL if needed, start its cluster, create the test role and database,
# and print the one line the test suite needs on stdout:
#     export CALLBOT_TEST_PG_URL=postgresql+psycopg://callbot:callbot@127.0.0.1:PORT/callbot_test
# Use it as:  eval "$(.ci/postgres.sh)"   (everything else goes to stderr). Safe to run twice.
# Environment: PG_ROLE, PG_PASSWORD, PG_DATABASE override the names above.
set -euo pipefail
role=${PG_ROLE:-callbot}
password=${PG_PASSWORD:-callbot}
database=${PG_DATABASE:-callbot_test}
say() { echo "postgres.sh: $*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v pg_lsclusters >/dev/null 2>&1 || [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
  say "installing postgresql from Debian"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 \
    || { as_root apt-get update -q >&2 && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2; }
fi

# The first cluster Debian made (e.g. "15 main 5432 down postgres ...").
read -r version cluster port status _ < <(pg_lsclusters -h | head -n 1)
if [ -z "${version:-}" ]; then
  say "no PostgreSQL cluster found after install; create one with: pg_createcluster --start 15 main"
  exit 1
fi
if [ "$status" != "online" ]; then
  say "starting cluster $version/$cluster on port $port"
  as_root pg_ctlcluster "$version" "$cluster" start >&2
fi
for _ in $(seq 1 30); do
  as_root runuser -u postgres -- pg_isready -q -p "$port" && break
  sleep 1
done
as_root runuser -u postgres -- pg_isready -p "$port" >&2 || { say "cluster $version/$cluster did not become ready"; exit 1; }

psql_admin() { as_root runuser -u postgres -- psql -p "$port" -v ON_ERROR_STOP=1 -qAt "$@"; }
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" != "1" ]; then
  say "creating role $role"
  psql_admin -c "CREATE ROLE \"$role\" LOGIN PASSWORD '$password' CREATEDB" >&2
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$database'")" != "1" ]; then
  say "creating database $database"
  psql_admin -c "CREATE DATABASE \"$database\" OWNER \"$role\"" >&2
fi
say "PostgreSQL $version ready on 127.0.0.1:$port"
echo "export CALLBOT_TEST_PG_URL=postgresql+psycopg://$role:$password@127.0.0.1:$port/$database"
