#!/usr/bin/env bash
# Runs every test Ferry has, on a fresh machine of this kind or a developer's:
# installs what is missing (libpq, PostgreSQL server, openssl), starts a throwaway
# PostgreSQL cluster (as the unprivileged `postgres` user when run as root), then runs
# formatting and lint checks and the whole workspace's tests. Stops the cluster on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

need_apt=()
[ -e /usr/include/postgresql/libpq-fe.h ] || need_apt+=(libpq-dev)
command -v openssl >/dev/null || need_apt+=(openssl)
pg_bin=""
for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && pg_bin="$d"; done
[ -n "$pg_bin" ] || command -v initdb >/dev/null || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && pg_bin="$d"; done
fi
[ -n "$pg_bin" ] && export PATH="$pg_bin:$PATH"

# A throwaway cluster on a free loopback port.
pg_dir=$(mktemp -d /tmp/ferry-pg.XXXXXX)
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  chown postgres "$pg_dir"
  as_pg=(runuser -u postgres --)
fi
cleanup() {
  "${as_pg[@]}" pg_ctl -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$pg_dir"
}
trap cleanup EXIT
log "starting PostgreSQL on 127.0.0.1:$pg_port"
"${as_pg[@]}" initdb -D "$pg_dir/data" --auth=trust --username=postgres -E UTF8 >/dev/null
"${as_pg[@]}" pg_ctl -D "$pg_dir/data" -l "$pg_dir/log" -w start \
  -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off" >/dev/null
export FERRY_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
log "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast --failure-output final
else
  cargo test --workspace --no-fail-fast
fi
