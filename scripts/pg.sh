# Sourced by scripts/test.sh and scripts/bench.sh: starts a throwaway PostgreSQL
# cluster on a free loopback port (as the `postgres` user when run as root), exports
# FERRY_TEST_DATABASE_URL, and stops and removes it when the calling script exits.
# FERRY_PG_FSYNC=on runs it durable (fsync and synchronous_commit on, what production
# runs: the benchmarks' headline figures); the default, off, is for tests.
pg_bin=""
for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && pg_bin="$d"; done
[ -n "$pg_bin" ] && export PATH="$pg_bin:$PATH"
pg_dir=$(mktemp -d /tmp/ferry-pg.XXXXXX)
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  chown postgres "$pg_dir"
  as_pg=(runuser -u postgres --)
fi
pg_cleanup() {
  "${as_pg[@]}" pg_ctl -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$pg_dir"
}
trap pg_cleanup EXIT
printf '==> starting PostgreSQL on 127.0.0.1:%s (fsync=%s)\n' "$pg_port" "${FERRY_PG_FSYNC:-off}" >&2
"${as_pg[@]}" initdb -D "$pg_dir/data" --auth=trust --username=postgres -E UTF8 >/dev/null
"${as_pg[@]}" pg_ctl -D "$pg_dir/data" -l "$pg_dir/log" -w start \
  -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=${FERRY_PG_FSYNC:-off} -c synchronous_commit=on" >/dev/null
export FERRY_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
