#!/usr/bin/env bash
# Runs every test Ferry has, on a fresh machine of this kind or a developer's:
# installs what is missing (libpq, PostgreSQL server, openssl), starts a throwaway
# PostgreSQL cluster (as the unprivileged `postgres` user when run as root) and an
# S3-compatible server (moto, from PyPI), then runs
# formatting and lint checks and the whole workspace's tests. Stops the cluster on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

need_apt=()
[ -e /usr/include/postgresql/libpq-fe.h ] || need_apt+=(libpq-dev)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v faketime >/dev/null || need_apt+=(faketime) # skewed agent clocks
command -v ip >/dev/null || need_apt+=(iproute2)        # hosts in network namespaces
command -v chromium >/dev/null || need_apt+=(chromium)  # the dashboard test
command -v npm >/dev/null || need_apt+=(nodejs npm)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# A throwaway cluster on a free loopback port, stopped on exit.
source scripts/pg.sh
# An S3-compatible server (moto) for the inventory and imported-certificate tests.
source scripts/s3.sh
# schemathesis (PyPI) for the spec-driven test of /openapi.json.
source scripts/schemathesis.sh

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
log "building the binaries the end-to-end tests run (ferry-agent, ferryctl, ferry-control-plane)"
cargo build --workspace --bins --quiet
log "packaging: systemd units, .debs installed with dpkg, Dockerfiles, Kubernetes manifests"
if [ "$(id -u)" = 0 ]; then
  bash scripts/test-packaging.sh
else
  log "skipping packaging checks: they install .deb packages and need root"
fi
log "fuzzing, short form: each cargo-fuzz target for 15 s from the committed seeds"
bash scripts/fuzz.sh --smoke
log "browser test driver (playwright-core, driving Debian's chromium)"
(cd tests/browser && npm ci --no-audit --no-fund --silent)
log "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast --failure-output final
else
  cargo test --workspace --no-fail-fast
fi
