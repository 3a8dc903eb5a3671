#!/usr/bin/env python3
"""Writes a synthetic requests-per-second series for the forecast backtest.

Five weeks of 5-minute samples from Monday 2024-01-01 00:00 UTC: a daily cycle (quiet at
04:00, busy in the afternoon, a smaller evening bump), quieter weekends, a growth trend of
about 20% over the five weeks, multiplicative noise, a few lost scrapes and a jittered
scrape time, so the forecaster's gap filling is exercised too. Fixed seed: the output is
the same on every run.

Usage: gen_rps.py OUTPUT.csv
"""

import math
import random
import sys

SEED = 20240101
START = 1704067200  # 2024-01-01T00:00:00Z, a Monday.
STEP = 300
DAYS = 35


def rate(t: int) -> float:
    days = (t - START) / 86400
    hour = (days % 1) * 24
    weekday = int(days) % 7
    # Afternoon peak and evening bump over a night trough.
    daily = (
        0.35
        + 0.55 * math.exp(-(((hour - 14.5) / 4.0) ** 2))
        + 0.20 * math.exp(-(((hour - 20.5) / 1.5) ** 2))
    )
    weekly = 0.6 if weekday >= 5 else 1.0
    trend = 1.0 + 0.2 * days / DAYS
    return 1000.0 * trend * daily * weekly


def main() -> None:
    rng = random.Random(SEED)
    out = open(sys.argv[1], "w") if len(sys.argv) > 1 else sys.stdout
    out.write("timestamp,value\n")
    for i in range(DAYS * 86400 // STEP):
        t = START + i * STEP
        if rng.random() < 0.005:
            continue  # a lost scrape
        value = rate(t) * (1.0 + rng.gauss(0.0, 0.05))
        jitter = rng.randint(-3, 3)
        out.write(f"{t + jitter},{value:.2f}\n")


if __name__ == "__main__":
    main()
