#!/usr/bin/env bash
# Runs Ferry's benchmarks against a throwaway PostgreSQL and prints their figures.
# Usage: bash scripts/bench.sh [--agents N] [--refreshes R] [--rate PER_SECOND]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
cargo build --release --quiet -p ferry-tests --bin ferry-bench
ulimit -n "$(ulimit -Hn)"
RUST_LOG=${RUST_LOG:-warn} ./target/release/ferry-bench refresh-latency "$@"
