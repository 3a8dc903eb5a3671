#!/usr/bin/env bash
# The long runs of the fault tests in tests/it/faults.rs, outside CI (which runs one and three
# trials): a full disk under load, then freed (needs root, as CI has, to mount a small tmpfs), and
# SIGKILL at random moments of ingest and running runbooks. Each prints its counts; any acknowledged
# event lost, any non-idempotent effect repeated or any effect without its intent fails the run.
#
#   tests/soak/faults.sh [DISK_FULL_TRIALS] [KILL_TRIALS]     # default 100 and 1000
#
# The SIGKILL trials share a store in rounds of HOMEOSTAT_KILL_ROUND (default 100), each round
# checked on its own store before the next starts.
set -euo pipefail
cd "$(dirname "$0")/../.."
disk_full=${1:-100}
kills=${2:-1000}
# The test binary is run directly, not through `cargo test`, which would hold the build directory's
# lock for the hour the trials take.
binary=$(cargo test --test it --no-run --message-format=json 2>/dev/null \
    | grep '"kind":\["test"\]' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
[ -x "$binary" ] || { echo "error: cannot build the integration tests" >&2; exit 2; }
echo "== a full disk, $disk_full trials"
HOMEOSTAT_DISK_FULL_TRIALS=$disk_full "$binary" --exact --nocapture \
    faults::a_full_disk_loses_nothing_acknowledged_and_the_daemon_recovers_by_itself \
    2>&1 | grep -E -A45 '^disk full|test result|panicked'
echo "== SIGKILL under load, $kills trials"
HOMEOSTAT_KILL_TRIALS=$kills "$binary" --exact --nocapture \
    faults::sigkill_under_load_loses_nothing_acknowledged_and_repeats_no_effect \
    2>&1 | grep -E -A45 '^sigkill|test result|panicked'
