#!/usr/bin/env bash
# Reproduces the NAB evaluation of `homeostat detect`. Run from the repository root:
#   eval/nab/run.sh | tee eval/nab/results.txt
# NAB_DATA and NAB_SCORER override where the data and the scorer are (default: ../shared).
set -euo pipefail

data=${NAB_DATA:-../shared/data/nab}
scorer=${NAB_SCORER:-../shared/tools/nab_score.py}
bin=target/release/homeostat
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

score() { # score RESULTS [scorer args...]
    local results=$1
    shift
    python3 "$scorer" --data "$data/data" --labels "$data/labels/combined_windows.json" \
        --results "$results" "$@"
}

seconds() { date +%s.%N; }

cargo build --release --quiet

echo "== NAB development data, default settings"
start=$(seconds)
"$bin" detect --dir "$data/data" --out "$work/default"
end=$(seconds)
rows=$(find "$data/data" -name '*.csv' -exec tail -n +2 {} + | grep -c ',')
printf 'detect: %d files, %d rows in %.3f s (CSV reading and writing included)\n' \
    "$(find "$data/data" -name '*.csv' | wc -l)" "$rows" "$(echo "$end - $start" | bc)"
score "$work/default"

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
    "$(echo "$end - $start" | bc)"

echo
echo "== Split check: settings chosen on one half of the files, scored on the other"
# Halves by alternating the sorted list of labelled files, so each half has every category.
python3 - "$data/labels/combined_windows.json" "$work" <<'PY'
import json, sys
files = sorted(json.load(open(sys.argv[1])))
open(sys.argv[2] + "/half_a.txt", "w").write("\n".join(files[0::2]) + "\n")
open(sys.argv[2] + "/half_b.txt", "w").write("\n".join(files[1::2]) + "\n")
PY
standard() { score "$1" --files "$2" --json | python3 -c \
    'import json, sys; print("%.2f" % json.load(sys.stdin)["profiles"]["standard"]["score"])'; }
grid=()
for cooldown in 100 150 300; do
    for window in 64 128; do
        for history in 512 1024; do
            grid+=("{\"cooldown_points\":$cooldown,\"window_points\":$window,\"history_points\":$history}")
        done
    done
done
for i in "${!grid[@]}"; do
    "$bin" detect --dir "$data/data" --out "$work/grid$i" --settings "${grid[$i]}"
done
for pair in "a b" "b a"; do
    read -r tune test <<<"$pair"
    best=-1000 best_i=0
    for i in "${!grid[@]}"; do
        s=$(standard "$work/grid$i" "$work/half_$tune.txt")
        if (($(echo "$s > $best" | bc))); then best=$s best_i=$i; fi
    done
    held_out=$(standard "$work/grid$best_i" "$work/half_$test.txt")
    defaults=$(standard "$work/default" "$work/half_$test.txt")
    oracle=-1000
    for i in "${!grid[@]}"; do
        s=$(standard "$work/grid$i" "$work/half_$test.txt")
        if (($(echo "$s > $oracle" | bc))); then oracle=$s; fi
    done
    echo "tuned on half $tune: ${grid[$best_i]} (standard $best there)"
    echo "  on half $test: $held_out; defaults $defaults; best of the grid chosen on half $test itself $oracle"
done
