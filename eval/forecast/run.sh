#!/usr/bin/env bash
# Backtests `homeostat forecast` on seasonal series and times its fits.
# Run from the repository root: `bash eval/forecast/run.sh | tee eval/forecast/results.txt`.
set -euo pipefail

NAB=${NAB:-/work/shared/data/nab/data}
DATA=eval/forecast/data
BIN=target/release/homeostat
ORIGINS=5

cargo build --release --bin homeostat >&2
mkdir -p "$DATA"
python3 eval/forecast/gen_rps.py "$DATA/rps_5min.csv"
# Its last week (from 2024-01-29 00:00 UTC), for timing the fit the daemon would run on a week
# of 5-minute data.
awk -F, 'NR == 1 || $1 >= 1706486400 - 150' "$DATA/rps_5min.csv" >"$DATA/rps_1week.csv"

SERIES=(
  "$NAB/artificialNoAnomaly/art_daily_small_noise.csv"
  "$NAB/realAWSCloudwatch/rds_cpu_utilization_cc0c53.csv"
  "$NAB/realAWSCloudwatch/rds_cpu_utilization_e47b3b.csv"
  "$NAB/realAWSCloudwatch/ec2_cpu_utilization_53ea38.csv"
  "$DATA/rps_5min.csv"
)
HORIZONS=(6h 1d)

JSON=$(mktemp -d)
trap 'rm -rf "$JSON"' EXIT

echo "# homeostat forecast backtests: $ORIGINS rolling origins, last windows of each series"
echo "# MAPE in %, MASE scaled by the in-sample seasonal-naive MAE; coverage of the 95% interval"
echo
for horizon in "${HORIZONS[@]}"; do
  for series in "${SERIES[@]}"; do
    "$BIN" forecast --input "$series" --horizon "$horizon" --backtest --origins "$ORIGINS" 2>/dev/null
    echo
    "$BIN" forecast --input "$series" --horizon "$horizon" --backtest --origins "$ORIGINS" --json \
      2>/dev/null >"$JSON/$(basename "$series" .csv)-$horizon.json"
  done
done

echo "# Summary (means over origins)"
python3 - "$JSON" "${HORIZONS[@]}" <<'PY'
import json, os, sys
folder, horizons = sys.argv[1], sys.argv[2:]
def cell(x, digits=3):
    return "-" if x is None else f"{x:.{digits}f}"
print(f"| {'series':<30} | horizon | {'MAPE %':>7} | {'MASE':>6} | {'SNaive MAPE %':>13} | {'SNaive MASE':>11} | coverage | {'ms/fit':>6} | {'model on full history':<26} |")
print(f"|{'-'*32}|---------|{'-'*9}|{'-'*8}|{'-'*15}|{'-'*13}|----------|{'-'*8}|{'-'*28}|")
for name in sorted({f.rsplit('-', 1)[0] for f in os.listdir(folder)}):
    for horizon in horizons:
        with open(os.path.join(folder, f"{name}-{horizon}.json")) as f:
            run = json.load(f)
        b = run["backtest"]
        print(
            f"| {name:<30} | {horizon:>7} | {cell(b['score']['mape'], 2):>7} | {cell(b['score']['mase']):>6} "
            f"| {cell(b['seasonal_naive']['mape'], 2):>13} | {cell(b['seasonal_naive']['mase']):>11} "
            f"| {b['coverage'] * 100:>7.0f}% | {run['timing_ms']['mean_origin']:>6.0f} | {run['full_history_model']:<26} |"
        )
PY

echo
echo "# Fit + 6h forecast on one week of 5-minute data (rps_1week.csv, 2016 points), 3 runs"
for run in 1 2 3; do
  "$BIN" forecast --input "$DATA/rps_1week.csv" --horizon 6h --output /dev/null 2>&1 | grep '^model:'
done
echo "# Fit + 6h forecast on five weeks (rps_5min.csv, 10080 points), 3 runs"
for run in 1 2 3; do
  "$BIN" forecast --input "$DATA/rps_5min.csv" --horizon 6h --output /dev/null 2>&1 | grep '^model:'
done
