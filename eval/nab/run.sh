#!/usr/bin/env bash
# Reproduces the NAB evaluation of `homeostat detect`. Run from the repository root:
#   eval/nab/run.sh | tee eval/nab/results.txt
# NAB_DATA and NAB_SCORER override where the data and the scorer are (default: ../shared).
set -euo pipefail

data=${NAB_DATA:-../shared/data/nab}
scorer=${NAB_SCORER:-../shared/tools/nab_score.py}
here=$(dirname "$0")
bin=target/release/homeostat
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

seconds() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc; }
cargo build --release --quiet
began=$(seconds)

echo "== NAB development data, default settings"
start=$(seconds)
"$bin" detect --dir "$data/data" --out "$work/default"
end=$(seconds)
rows=$(find "$data/data" -name '*.csv' -exec tail -n +2 {} + | grep -c ',')
printf 'detect: %d files, %d rows in %.3f s (CSV reading and writing included)\n' \
    "$(find "$data/data" -name '*.csv' | wc -l)" "$rows" "$(elapsed "$start" "$end")"
python3 "$scorer" --data "$data/data" --labels "$data/labels/combined_windows.json" \
    --results "$work/default"

echo
echo "== Leave one category out: thresholds (and, in the last column, settings) chosen without it"
# The settings a user might tune: the cooldown, the sliding window and the tail's history.
candidates=(--candidate "default=$work/default")
for cooldown in 32 64 128; do
    for window in 64 128; do
        for history in 512 1024; do
            name="c${cooldown}w${window}h${history}"
            "$bin" detect --dir "$data/data" --out "$work/$name" --settings \
                "{\"cooldown_points\":$cooldown,\"window_points\":$window,\"history_points\":$history}"
            candidates+=(--candidate "$name=$work/$name")
        done
    done
done
python3 "$here/loco.py" --data "$data/data" --labels "$data/labels/combined_windows.json" \
    --scorer "$scorer" "${candidates[@]}"
echo "holding out NAB's own three categories instead (default settings):"
python3 "$here/loco.py" --data "$data/data" --labels "$data/labels/combined_windows.json" \
    --scorer "$scorer" --split nab --candidate "default=$work/default" | sed -n '3,6p'

echo
echo "== Speed: 365,000 points in one series (NAB values repeated, 5-minute timestamps)"
find "$data/data" -name '*.csv' | sort | xargs -n1 tail -n +2 | cut -d, -f2 \
    | awk 'BEGIN { print "timestamp,value" } { v[NR] = $0 } END {
        for (i = 0; i < 365000; i++) print 1400000000 + 300 * i "," v[i % NR + 1] }' \
    >"$work/long.csv"
start=$(seconds)
"$bin" detect --input "$work/long.csv" --output "$work/long.out.csv"
end=$(seconds)
printf 'detect: 365000 rows in %.3f s, one core (CSV reading and writing included)\n' \
    "$(elapsed "$start" "$end")"

echo
echo "== Synthetic series of other kinds (a second opinion, not a benchmark: see synthetic.py)"
python3 "$here/synthetic.py" "$work/synthetic" --seed 1 --per-kind 8
"$bin" detect --dir "$work/synthetic/data" --out "$work/synthetic-scored"
python3 "$scorer" --data "$work/synthetic/data" \
    --labels "$work/synthetic/labels/combined_windows.json" --results "$work/synthetic-scored" \
    | sed -n '1,5p'

echo
printf 'run.sh: %.0f s in all (after the build)\n' "$(elapsed "$began" "$(seconds)")"
