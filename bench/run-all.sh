#!/usr/bin/env bash
# Regenerates every figure in bench/README.md from the current commit, into bench/results/, each
# file stamped with the commit and the date. Run from anywhere; it takes about half an hour on the
# 2-core machine and needs Alertmanager (`prometheus-alertmanager`) for the side-by-side runs.
#
#   bench/run-all.sh            # everything
#   bench/run-all.sh ingest     # only the named parts: ingest latency pipeline runbooks incidents
#                               # overload disk scale dashboard
#
# Every load is bounded in count and time and stops by itself; the servers run on loopback ports
# and temporary directories the bench removes.
set -euo pipefail
cd "$(dirname "$0")/.."

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(ingest latency pipeline runbooks incidents overload disk scale dashboard)
wants() { local part; for part in "${parts[@]}"; do [ "$part" = "$1" ] && return 0; done; return 1; }

alertmanager=${ALERTMANAGER:-/usr/bin/prometheus-alertmanager}
commit=$(git rev-parse --short HEAD)
dirty=$([ -z "$(git status --porcelain --untracked-files=no)" ] || echo " (with uncommitted changes)")
stamp="commit ${commit}${dirty}, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores"
results=bench/results
mkdir -p "$results"

echo "building at ${commit}${dirty}" >&2
cargo build --release --quiet -p homeostat -p homeostat-bench
bench=target/release/homeostat-bench
homeostat=target/release/homeostat

# run NAME COMMAND...: stdout to results/NAME.txt under a stamp line, stderr to the terminal.
run() {
    local name=$1
    shift
    echo "== $name" >&2
    { echo "# $stamp"; echo "# $*"; "$@"; } > "$results/$name.txt"
    cat "$results/$name.txt"
}

if wants ingest; then
    run ingest "$bench" ingest --homeostat "$homeostat" --alertmanager "$alertmanager" \
        --batch 1,100 --connections 64 --out "$results/ingest.json"
    run ingest-256 "$bench" ingest --homeostat "$homeostat" --alertmanager "$alertmanager" \
        --batch 1 --connections 256 --out "$results/ingest-256.json"
    # The same side by side with homeostat's store on PostgreSQL (a server from the Debian package
    # per daemon, started for the run).
    if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
        run ingest-postgres "$bench" ingest --homeostat "$homeostat" --alertmanager "$alertmanager" \
            --batch 1,100 --connections 64 --store postgres --out "$results/ingest-postgres.json"
    fi
fi
if wants latency; then
    for sync in full normal; do
        for rate in 10000 2000; do
            run "latency-$rate-$sync" "$bench" latency --homeostat "$homeostat" --rate "$rate" \
                --synchronous "$sync" --out "$results/latency-$rate-$sync.json"
        done
    done
    if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
        for rate in 10000 2000; do
            run "latency-$rate-postgres" "$bench" latency --homeostat "$homeostat" --rate "$rate" \
                --store postgres --out "$results/latency-$rate-postgres.json"
        done
    fi
fi
if wants pipeline; then
    for sync in full normal; do
        run "pipeline-$sync" "$bench" pipeline --batch 1,100 --synchronous "$sync"
        run "pipeline-dispatch-$sync" "$bench" pipeline --batch 1 --with-rule --synchronous "$sync"
    done
    # The same engine on PostgreSQL (a server from the Debian package, started for the run).
    if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
        run pipeline-postgres "$bench" pipeline --batch 1,100 --store postgres
    fi
fi
if wants runbooks; then
    run runbooks "$bench" runbooks
fi
if wants incidents; then
    run incidents "$bench" incidents --alertmanager "$alertmanager"
fi
if wants overload; then
    run overload "$bench" overload --homeostat "$homeostat" --out "$results/overload.json"
fi
if wants disk; then
    run disk "$bench" disk --homeostat "$homeostat" --events 10000000 --out "$results/disk.json"
fi
if wants dashboard; then
    run dashboard "$bench" dashboard --homeostat "$homeostat" --incidents 100000 \
        --out "$results/dashboard.json"
fi
if wants scale; then
    run scale "$bench" scale --homeostat "$homeostat" --out "$results/scale.json" \
        --plots bench/plots
    # The plots as PNG files too, drawn by headless Chromium (Debian's `chromium`).
    if command -v chromium >/dev/null; then
        for svg in bench/plots/*.svg; do
            chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=760,460 \
                --screenshot="${svg%.svg}.png" "file://$PWD/$svg" 2>/dev/null
        done
    else
        echo "chromium is not installed: the plots stay SVG only (apt-get install chromium)" >&2
    fi
fi
echo "results in $results/, stamped: $stamp" >&2
