#!/usr/bin/env bash
# Fuzzes Ferry's input handling (tests/fuzz: cargo-fuzz + libFuzzer) for a bounded time
# per target: the agent's bundle decoding and verification (agent_bundle), the CA's CSR
# handling (ca_csr), the name and key validators (names).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [--smoke] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60. --smoke is the short form for a test run: 15 s per
# target by default, from the committed seeds alone, on an unoptimized build (`--dev`:
# about a quarter of the cold build time, about a tenth of the executions per second).
# Prints per target the runs executed, exec/s, corpus size and crashes; exits non-zero
# if any target crashed, panicked, timed out or ran out of memory, keeping the input in
# target/fuzz/artifacts/<target>/ with the command that replays it. Add such an input
# as a regression #[test] in the crate that owned the bug.
#
# Works on the stable toolchain. The sanitizer is `none` by default, and then cargo-fuzz
# passes no nightly-only flag at all (only -C flags and --cfg fuzzing): Ferry's crates
# forbid unsafe code, so what fuzzing can find in them is panics, overflows (debug
# assertions are on), timeouts and memory blow-ups, which libFuzzer catches without ASan
# and faster. FUZZ_SANITIZER=address turns ASan on: that needs -Zsanitizer, so those
# builds run with RUSTC_BOOTSTRAP=1 (in their own target dir, as the variable changes
# how some build scripts see the compiler). FUZZ_TOOLCHAIN=nightly runs `cargo +nightly`.
#
# Everything builds into target/fuzz (FUZZ_TARGET_DIR to change it); the corpus libFuzzer
# grows is kept in target/fuzz/corpus/<target> (the committed seeds in tests/fuzz/corpus/
# are only read).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

seconds=""
smoke=0
targets=()
for arg in "$@"; do
  case "$arg" in
    --smoke) smoke=1 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    '' | *[!0-9]*) targets+=("$arg") ;;
    *) seconds="$arg" ;;
  esac
done
if [ -z "$seconds" ]; then
  if [ "$smoke" = 1 ]; then seconds=15; else seconds=60; fi
fi
[ "${#targets[@]}" -gt 0 ] || targets=(agent_bundle ca_csr names)

cargo=(cargo)
[ -z "${FUZZ_TOOLCHAIN:-}" ] || cargo=(cargo "+$FUZZ_TOOLCHAIN")
sanitizer="${FUZZ_SANITIZER:-none}"
target_dir=target/fuzz
if [ "$sanitizer" != none ]; then
  target_dir="target/fuzz-$sanitizer"
  export RUSTC_BOOTSTRAP=1 # -Zsanitizer on a stable compiler
fi
target_dir="${FUZZ_TARGET_DIR:-$target_dir}"
fuzz_opts=(--fuzz-dir tests/fuzz --target-dir "$target_dir" --sanitizer "$sanitizer" --debug-assertions)
[ "$smoke" = 0 ] || fuzz_opts+=(--dev)

if ! "${cargo[@]}" fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --version 0.13.2 --quiet
fi
log "$("${cargo[@]}" --version) / $("${cargo[@]}" fuzz --version), sanitizer: $sanitizer"

log "building ${targets[*]}"
start=$(date +%s)
if [ "${#targets[@]}" = 3 ]; then
  "${cargo[@]}" fuzz build "${fuzz_opts[@]}"
else
  for t in "${targets[@]}"; do "${cargo[@]}" fuzz build "${fuzz_opts[@]}" "$t"; done
fi
log "built in $(($(date +%s) - start)) s"

# What libFuzzer leaves when a run fails (slow-unit-* are only reports).
findings() { find "$1" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | sort; }

failed=()
summary=()
for t in "${targets[@]}"; do
  corpus="$target_dir/corpus/$t"
  if [ "$smoke" = 1 ]; then
    # From the committed seeds only, so a smoke run costs the same everywhere.
    corpus="$target_dir/smoke-corpus/$t"
    rm -rf "$corpus"
  fi
  artifacts="$target_dir/artifacts/$t"
  logfile="$target_dir/logs/$t.log"
  mkdir -p "$corpus" "$artifacts" "$(dirname "$logfile")"
  before=$(findings "$artifacts")
  log "fuzzing $t for $seconds s (log: $logfile)"
  max_len=4096
  [ "$t" != agent_bundle ] || max_len=16384 # a bundle with a chain and an RSA key
  status=0
  started=$(date +%s)
  "${cargo[@]}" fuzz run "${fuzz_opts[@]}" "$t" "$corpus" "tests/fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" >"$logfile" 2>&1 || status=$?
  took=$(($(date +%s) - started))
  stat() { sed -n "s/^stat::$1: *//p" "$logfile" | tail -1; }
  runs=$(stat number_of_executed_units)
  speed=$(stat average_exec_per_sec)
  corp=$(grep -Eo 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$logfile" | tail -1 | sed 's/corp: //')
  new=$(comm -13 <(printf '%s\n' "$before") <(findings "$artifacts") | sed '/^$/d')
  crashes=$(printf '%s' "$new" | grep -c . || true)
  summary+=("$(printf '%-13s %4s s %11s runs %7s exec/s   corpus %-11s crashes %s' \
    "$t" "$took" "${runs:-?}" "${speed:-?}" "${corp:-?}" "$crashes")")
  if [ "$status" != 0 ] || [ "$crashes" != 0 ]; then
    failed+=("$t")
    tail -n 40 "$logfile" >&2
    for a in $new; do
      log "$t: kept $a; replay: ${RUSTC_BOOTSTRAP:+RUSTC_BOOTSTRAP=1 }cargo fuzz run ${fuzz_opts[*]} $t $a"
    done
  fi
done

log "summary"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  log "FAILED: ${failed[*]} (inputs kept in $target_dir/artifacts/)"
  exit 1
fi
log "no crashes"
