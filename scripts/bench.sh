#!/usr/bin/env bash
# Runs Ferry's benchmarks against a throwaway PostgreSQL and prints their figures.
# Usage: bash scripts/bench.sh [refresh-latency] [--agents N] [--refreshes R] [--rate PER_SECOND]
#        bash scripts/bench.sh staleness [--services S] [--nodes N]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
cargo build --release --quiet -p ferry-tests --bins
ulimit -n "$(ulimit -Hn)"
export RUST_LOG=${RUST_LOG:-warn}
case "${1:-refresh-latency}" in
  staleness) shift; ./target/release/ferry-bench-staleness "$@" ;;
  refresh-latency) [ $# -gt 0 ] && shift; ./target/release/ferry-bench refresh-latency "$@" ;;
  *) ./target/release/ferry-bench refresh-latency "$@" ;;
esac
