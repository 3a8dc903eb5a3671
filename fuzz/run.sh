#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation on the stable toolchain and runs
# each for RUNS executions (default 10,000,000), then prints executions and panics per target.
#
#   fuzz/run.sh                      # every target, 10M executions each
#   RUNS=100000 fuzz/run.sh cel      # one target, a short run
#   JOBS=2 fuzz/run.sh cel           # two processes sharing the corpus
#
# JOBS=N runs N processes per target on the same corpus directory (libFuzzer re-reads it, so each
# picks up what the others found), RUNS/N executions each; the table sums them.
#
# Runs under `nice`; new inputs that reach new code are added to corpus/TARGET, crashes land in
# artifacts/TARGET and logs in logs/TARGET.log. `MERGE=1` minimizes each corpus afterwards.
set -euo pipefail
cd "$(dirname "$0")"
RUNS=${RUNS:-10000000}
MAX_LEN=${MAX_LEN:-2048}
ALL=(alertmanager native cloudevents webhook matchers config templates cel)
TARGETS=("${@:-${ALL[@]}}")
[ $# -eq 0 ] && TARGETS=("${ALL[@]}")

# The flags `cargo fuzz build -s none` passes: SanitizerCoverage's module pass with inline 8-bit
# counters, the PC table and comparison tracing. All are stable `-C` options, so no nightly and no
# RUSTC_BOOTSTRAP are needed; only AddressSanitizer (`-Zsanitizer`) would need them, and safe Rust
# has no memory errors for it to find.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
JOBS=${JOBS:-1}
# With an explicit `--target`, RUSTFLAGS skip build scripts, which must not be instrumented.
HOST=$(rustc -vV | sed -n 's/^host: //p')
nice cargo build --release --bins --target "$HOST" >&2
BIN="target/$HOST/release"

mkdir -p logs
printf '%-14s %14s %8s %s\n' target executions panics artifacts
for target in "${TARGETS[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  # A config file is longer than the payloads.
  max_len=$MAX_LEN
  [ "$target" = config ] && max_len=$((MAX_LEN * 4))
  # A panic aborts a process (libFuzzer stops at the first crash); the exit status says so.
  pids=() logs=()
  for job in $(seq 1 "$JOBS"); do
    log="logs/$target.log"
    [ "$JOBS" -gt 1 ] && log="logs/$target.$job.log"
    logs+=("$log")
    nice "$BIN/$target" "corpus/$target" -runs="$((RUNS / JOBS))" -max_len="$max_len" \
      -timeout="${TIMEOUT:-10}" -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="artifacts/$target/" >"$log" 2>&1 &
    pids+=($!)
  done
  status=0
  for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
  executions=0
  for log in "${logs[@]}"; do
    n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    if [ -z "$n" ]; then
      # libFuzzer prints no final stats after a crash; its last status line has the count.
      n=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
    fi
    executions=$((executions + ${n:-0}))
  done
  panics=$(find "artifacts/$target" -type f -name 'crash-*' | wc -l)
  [ "$status" -ne 0 ] && [ "$panics" -eq 0 ] && panics="exit $status"
  printf '%-14s %14s %8s %s\n' "$target" "${executions:-0}" "$panics" "artifacts/$target"
  if [ "${MERGE:-0}" = 1 ]; then
    rm -rf "corpus/$target.min" && mkdir "corpus/$target.min"
    nice "$BIN/$target" -merge=1 -max_len="$max_len" "corpus/$target.min" "corpus/$target" \
      >>"logs/$target.log" 2>&1
    rm -rf "corpus/$target" && mv "corpus/$target.min" "corpus/$target"
  fi
done
