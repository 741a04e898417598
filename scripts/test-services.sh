#!/usr/bin/env bash
# Start throw-away PostgreSQL and Redis servers on loopback for the test suite, installing them from Debian's
# packages when missing. Prints `export TEST_DATABASE_URL=... TEST_REDIS_URL=...` for the caller to eval.
# PostgreSQL refuses to run as root, so the cluster is initialised and started as the `postgres` user.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${TEST_SERVICES_DIR:-/tmp/workbench-test-services}"
pg_port="${TEST_PG_PORT:-55432}"
redis_port="${TEST_REDIS_PORT:-56379}"

need=()
command -v redis-server >/dev/null || need+=(redis-server)
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$pg_bin" ] || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq "${need[@]}" >&2
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi

mkdir -p "$dir"
# Redis: no persistence, loopback only.
if ! redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --logfile "$dir/redis.log" --dir "$dir" >&2
fi

# PostgreSQL: a private cluster owned by the postgres user (or the current user when not root).
pg_user=$(id -un)
run_pg() { "$@"; }
if [ "$(id -u)" = 0 ]; then
  pg_user=postgres
  id postgres >/dev/null 2>&1 || useradd --system --home "$dir" postgres
  run_pg() { su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; }
fi
pgdata="$dir/pgdata"
if [ ! -f "$pgdata/PG_VERSION" ]; then
  mkdir -p "$pgdata" && chown "$pg_user" "$dir" "$pgdata"
  run_pg "$pg_bin/initdb" -D "$pgdata" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
fi
if ! run_pg "$pg_bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
  run_pg "$pg_bin/pg_ctl" -D "$pgdata" -l "$dir/postgres.log" -w \
    -o "-p $pg_port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off" start >&2
fi
for _ in $(seq 1 50); do
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.1
done
psql -h 127.0.0.1 -p "$pg_port" -U postgres -tc "select 1 from pg_database where datname='workbench_test'" \
  | grep -q 1 || psql -h 127.0.0.1 -p "$pg_port" -U postgres -qc "create database workbench_test" >&2
echo "export TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:$pg_port/workbench_test"
echo "export TEST_REDIS_URL=redis://127.0.0.1:$redis_port/0"
