#!/usr/bin/env bash
# Ferry's benchmark harness: every figure of docs/benchmarks.md in one run, against a
# throwaway PostgreSQL on loopback, release build. Bounded: the full run takes about
# 25 minutes (10 of them the agent's idle window), the smoke run about 2.
#
#   bash scripts/bench.sh [--smoke]      same-run limits, database paths, fleet
#   bash scripts/bench.sh floors [ARGS]  limits: held idle connections (TCP, rustls),
#                                        LISTEN/NOTIFY, INSERT+COMMIT, pgbench,
#                                        signatures/s, agent footprint
#   bash scripts/bench.sh database [--services S --nodes N]
#                                        scheduler pick, stale pass, status, node page
#   bash scripts/bench.sh fleet [--agents N --extra M ...]
#                                        enrollment storm, memory per held long-poll,
#                                        refresh -> ack, fan-out, rotation cycles
#   bash scripts/bench.sh refresh-latency [--agents N --refreshes R --rate PER_SECOND]
#                                        the agent library in-process (issue 4)
set -euo pipefail
cd "$(dirname "$0")/.."
# Headline figures run durable, as production does; FERRY_PG_FSYNC=off for the others.
export FERRY_PG_FSYNC=${FERRY_PG_FSYNC:-on}
source scripts/pg.sh
cargo build --release --quiet -p ferry-tests --bins -p ferry-control-plane -p ferry-agent
ulimit -n "$(ulimit -Hn)"
export RUST_LOG=${RUST_LOG:-warn}
bin=./target/release
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

part="${1:-all}"
[ "$part" = --smoke ] && part=all
[ $# -gt 0 ] && [ "$1" != --smoke ] && shift
smoke=()
for a in "$@"; do [ "$a" = --smoke ] && smoke=(--smoke); done

echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)'), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, PostgreSQL fsync=$FERRY_PG_FSYNC"
case "$part" in
  floors) "$bin/ferry-bench-floors" all --url "$FERRY_TEST_DATABASE_URL" "$@" ;;
  database | staleness) "$bin/ferry-bench-staleness" "$@" ;;
  fleet) "$bin/ferry-bench" fleet "$@" ;;
  refresh-latency) "$bin/ferry-bench" refresh-latency "$@" ;;
  all)
    if [ ${#smoke[@]} -gt 0 ]; then db_size=(--smoke); else db_size=(--services 10000 --nodes 1000000); fi
    say "same-run limits and agent footprint"
    "$bin/ferry-bench-floors" all --url "$FERRY_TEST_DATABASE_URL" "${smoke[@]}"
    say "database paths"
    "$bin/ferry-bench-staleness" "${db_size[@]}"
    say "fleet"
    "$bin/ferry-bench" fleet "${smoke[@]}"
    ;;
  *) echo "unknown part $part: floors, database, fleet, refresh-latency (or nothing for all)" >&2; exit 64 ;;
esac
