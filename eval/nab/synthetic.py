#!/usr/bin/env python3
"""Writes a synthetic transfer check in NAB's layout: data/<kind>/<name>.csv and a windows file.

    python3 eval/nab/synthetic.py OUT [--seed N]

The development data has few kinds of series: 4,032-row files at five minutes, mostly AWS
CloudWatch metrics. Real exports also come hourly, short, with gaps and jittered clocks, as
heavy-tailed counts, as slow sensors and as strongly weekly demand. This generates such series
from generic models (no NAB data), with anomalies of the usual kinds (a level shift, a burst, a
drop, a failure, a changed day), and windows placed as NAB places them: 10% of the file's rows,
shared equally by its anomalies, centred on each anomaly's start. A third of the files have no
anomaly, to count false alarms. It is a second opinion beside the leave-one-category-out score,
not a benchmark: the models are ours, so a detector can be fitted to them as to any data.
"""

import argparse
import datetime
import json
import math
import os
import random

START = datetime.datetime(2015, 1, 5)  # a Monday


def poisson(rng, lam):
    if lam > 50:
        return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def clock(rng, n, step, gap_chance=0.0, jitter=0):
    """n timestamps `step` seconds apart, some gaps of 2 to 6 steps, jittered, never repeated."""
    out, at = [], 0
    for _ in range(n):
        out.append(at + (rng.randint(-jitter, jitter) if jitter else 0))
        at += step * (rng.randint(2, 6) if rng.random() < gap_chance else 1)
    for i in range(1, n):  # keep the jittered clock increasing
        out[i] = max(out[i], out[i - 1] + 1)
    return out


def day_phase(secs):
    return (secs % 86400) / 86400.0


def onsets(rng, n, count, min_gap):
    """`count` anomaly starts after the first fifth of the file, `min_gap` rows apart."""
    for _ in range(1000):
        starts = sorted(rng.randint(int(0.2 * n), int(0.93 * n)) for _ in range(count))
        if all(b - a >= min_gap for a, b in zip(starts, starts[1:])):
            return starts
    return []


def counts(rng, n, anomalies):
    """Event counts every five minutes: Poisson around a daily and weekly rate, with frequent
    small bursts that are the series' habit; an anomaly is a burst ten times larger."""
    times = clock(rng, n, 300)
    base = rng.uniform(5, 60)
    boost = [1.0] * n
    i = 0
    while i < n:
        if rng.random() < 0.004:
            size, length = rng.uniform(1.5, 4), rng.randint(3, 24)
            for k in range(length):
                if i + k < n:
                    boost[i + k] += (size - 1) * math.exp(-k / (length / 3))
        i += 1
    for start in anomalies:
        size, length = rng.uniform(8, 20), rng.randint(24, 120)
        for k in range(length):
            if start + k < n:
                boost[start + k] += (size - 1) * math.exp(-k / (length / 3))
    values = []
    for i, t in enumerate(times):
        daily = 1 + 0.6 * math.sin(2 * math.pi * (day_phase(t) - 0.3))
        weekend = 0.7 if (t // 86400) % 7 >= 5 else 1.0
        values.append(poisson(rng, base * daily * weekend * boost[i]))
    return times, values


def gauge(rng, n, anomalies):
    """A CPU-like gauge: a noisy level with rare spikes; an anomaly is a level shift or more
    noise that lasts."""
    times = clock(rng, n, 300, gap_chance=0.002)
    level, noise = rng.uniform(10, 60), rng.uniform(0.5, 4)
    shift = [0.0] * n
    gain = [1.0] * n
    for start in anomalies:
        length = rng.randint(100, 600)
        if rng.random() < 0.5:
            delta = rng.choice([-1, 1]) * rng.uniform(4, 8) * noise
            for k in range(start, min(n, start + length)):
                shift[k] = delta
        else:
            for k in range(start, min(n, start + length)):
                gain[k] = rng.uniform(4, 6)
    values = []
    for i in range(n):
        v = level + shift[i] + gain[i] * noise * rng.gauss(0, 1)
        if rng.random() < 0.003:
            v += rng.uniform(3, 6) * noise
        values.append(round(max(0.0, v), 3))
    return times, values


def latency(rng, n, anomalies):
    """A latency: log-normal around a daily level, with rare short spikes; an anomaly is a
    sustained rise to twice the usual."""
    times = clock(rng, n, 300, jitter=20)
    base = rng.uniform(0.05, 2.0)
    rise = [1.0] * n
    for start in anomalies:
        for k in range(start, min(n, start + rng.randint(30, 200))):
            rise[k] = rng.uniform(2.0, 2.6)
    values = []
    for i, t in enumerate(times):
        daily = 1 + 0.2 * math.sin(2 * math.pi * day_phase(t))
        spike = rng.uniform(2, 4) if rng.random() < 0.004 else 1.0
        values.append(round(base * daily * rise[i] * spike * math.exp(rng.gauss(0, 0.15)), 5))
    return times, values


def sensor(rng, n, anomalies):
    """A temperature: a slow mean-reverting walk with a daily swing; an anomaly is a failure,
    a fall far below the usual range that lasts a while."""
    times = clock(rng, n, 300)
    mean, swing = rng.uniform(60, 90), rng.uniform(1, 4)
    x = 0.0
    values = []
    fail = {}
    for start in anomalies:
        depth, fall, hold = rng.uniform(15, 40), rng.randint(5, 40), rng.randint(30, 300)
        for k in range(fall + hold):
            fail[start + k] = depth * min(1.0, (k + 1) / fall)
    for i, t in enumerate(times):
        x = 0.995 * x + rng.gauss(0, 0.3)
        v = mean + swing * math.sin(2 * math.pi * day_phase(t)) + x - fail.get(i, 0.0)
        values.append(round(v, 3))
    return times, values


def demand(rng, n, anomalies):
    """Demand every half hour with a strong daily shape that differs at weekends; an anomaly is
    a weekday shaped like a Sunday (a holiday) or a collapse for some hours (a storm)."""
    times = clock(rng, n, 1800)
    scale = rng.uniform(5000, 20000)
    holiday = {}
    for start in anomalies:
        if rng.random() < 0.5:
            for k in range(start, start + 48):
                holiday[k] = "sunday"
        else:
            for k in range(start, start + rng.randint(8, 24)):
                holiday[k] = "storm"

    def shape(phase, weekend):
        if weekend:
            return 0.6 + 0.4 * math.exp(-((phase - 0.55) ** 2) / 0.03)
        return (0.3 + 0.7 * math.exp(-((phase - 0.35) ** 2) / 0.005)
                + 0.8 * math.exp(-((phase - 0.75) ** 2) / 0.01))

    values = []
    for i, t in enumerate(times):
        weekend = (t // 86400) % 7 >= 5
        kind = holiday.get(i)
        v = scale * shape(day_phase(t), weekend or kind == "sunday")
        if kind == "storm":
            v *= 0.3
        values.append(int(v * (1 + rng.gauss(0, 0.04))))
    return times, values


def short_hourly(rng, n, anomalies):
    """A short hourly business metric (a price, a rate) with missing hours: noisy around a
    weak daily cycle; an anomaly is a jump to a new level for a while, or a single spike."""
    times = clock(rng, n, 3600, gap_chance=0.05)
    level = rng.uniform(0.1, 3.0)
    factor = [1.0] * n
    for start in anomalies:
        if rng.random() < 0.6:
            m = rng.choice([rng.uniform(1.8, 2.5), rng.uniform(0.3, 0.45)])
            for k in range(start, min(n, start + rng.randint(24, 150))):
                factor[k] = m
        else:
            factor[start] = rng.uniform(4, 6)
    values = []
    for i, t in enumerate(times):
        daily = 1 + 0.15 * math.sin(2 * math.pi * day_phase(t))
        values.append(round(level * daily * factor[i] * math.exp(rng.gauss(0, 0.12)), 6))
    return times, values


def short_traffic(rng, n, anomalies):
    """Road speed every five minutes with a jittered clock and dropouts: dips at rush hours;
    an anomaly is an incident, speed falling to a crawl for a while."""
    times = clock(rng, n, 300, gap_chance=0.03, jitter=60)
    free = rng.uniform(55, 70)
    crawl = {}
    for start in anomalies:
        for k in range(start, start + rng.randint(6, 36)):
            crawl[k] = rng.uniform(10, 25)
    values = []
    for i, t in enumerate(times):
        p = day_phase(t)
        rush = math.exp(-((p - 0.33) ** 2) / 0.002) + math.exp(-((p - 0.72) ** 2) / 0.003)
        v = free - 15 * rush + rng.gauss(0, 3)
        if i in crawl:
            v = crawl[i] + rng.gauss(0, 2)
        values.append(round(max(0.0, v), 1))
    return times, values


KINDS = {
    # kind: (model, rows from, rows to, most anomalies)
    "counts": (counts, 8000, 16000, 3),
    "gauge": (gauge, 4000, 16000, 2),
    "latency": (latency, 4000, 8000, 3),
    "sensor": (sensor, 7000, 20000, 3),
    "demand": (demand, 8000, 10000, 4),
    "short_hourly": (short_hourly, 1200, 2400, 2),
    "short_traffic": (short_traffic, 1100, 2500, 3),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--per-kind", type=int, default=4)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    windows = {}
    for kind, (model, low, high, most) in KINDS.items():
        os.makedirs(os.path.join(args.out, "data", kind), exist_ok=True)
        for index in range(args.per_kind):
            n = rng.randint(low, high)
            count = 0 if index % 3 == 2 else rng.randint(1, most)
            width = int(0.1 * n / count) if count else 0
            starts = onsets(rng, n, count, width + 2) if count else []
            times, values = model(rng, n, starts)
            name = "%s_%d.csv" % (kind, index)
            stamp = [(START + datetime.timedelta(seconds=t)).strftime("%Y-%m-%d %H:%M:%S")
                     for t in times]
            with open(os.path.join(args.out, "data", kind, name), "w") as f:
                f.write("timestamp,value\n")
                for s, v in zip(stamp, values):
                    f.write("%s,%s\n" % (s, v))
            spans = []
            for start in starts:
                left = max(0, start - width // 2)
                right = min(n - 1, left + width - 1)
                spans.append([stamp[left] + ".000000", stamp[right] + ".000000"])
            windows["%s/%s" % (kind, name)] = spans
    os.makedirs(os.path.join(args.out, "labels"), exist_ok=True)
    with open(os.path.join(args.out, "labels", "combined_windows.json"), "w") as f:
        json.dump(windows, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
