#!/usr/bin/env python3
"""Leave-one-category-out cross-validation of `homeostat detect` on the NAB development data.

    python3 eval/nab/loco.py --data DATA --labels WINDOWS_JSON --scorer nab_score.py \
        --candidate NAME=RESULTS_DIR [--candidate NAME=RESULTS_DIR ...] [--json]

Each candidate is one run of the detector over every development file (one choice of its
settings). For each held-out category, the candidate and the threshold are chosen on the other
categories only (the highest score there, with the scorer's own threshold search), and the
held-out files are scored with that candidate at that threshold. The held-out raw scores of all
categories are summed and normalised exactly as the plain development score is (null detector
and perfect score over all files), so the two numbers are comparable: the plain score chooses
the threshold on the files it scores, the cross-validated one never does.

Categories. NAB's development folder holds three categories; realAWSCloudwatch alone is 17 of
the 28 files and 30 of the 36 windows, so it is split by the kind of metric into three, giving
the five categories the cross-validation holds out in turn:

    artificialNoAnomaly       5 files, no windows: held out, it counts only its false alarms
    artificialWithAnomaly     6 files,  6 windows
    aws-instance-cpu          8 files, 12 windows (ec2_cpu_utilization_*)
    aws-bytes                 5 files,  9 windows (disk write bytes, network in)
    aws-service               4 files,  9 windows (RDS CPU, ELB request count, autoscaling group)

`--split nab` holds out NAB's own three categories instead (harsher: holding out
realAWSCloudwatch leaves six artificial windows to choose on).

The scorer is imported from `--scorer` (NAB's rules in one independent implementation): this
script only chooses what to score with what.
"""

import argparse
import importlib.util
import json
import sys


def category(rel, split):
    folder, name = rel.split("/", 1)
    if split == "nab" or folder != "realAWSCloudwatch":
        return folder
    if name.startswith("ec2_cpu_utilization"):
        return "aws-instance-cpu"
    if "disk_write" in name or "network_in" in name or "NetworkIn" in name:
        return "aws-bytes"
    return "aws-service"


def load_scorer(path):
    spec = importlib.util.spec_from_file_location("nab_score", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--labels", required=True)
    ap.add_argument("--scorer", required=True)
    ap.add_argument("--candidate", action="append", required=True, metavar="NAME=DIR",
                    help="a run of the detector; the first is the default settings")
    ap.add_argument("--split", choices=["five", "nab"], default="five")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    nab = load_scorer(args.scorer)
    candidates = []
    for item in args.candidate:
        name, _, results = item.partition("=")
        try:
            files, scores = nab.load(args.data, args.labels, results, None)
        except nab.InputError as e:
            print("loco: error: %s: %s" % (name, e), file=sys.stderr)
            return 2
        candidates.append((name, files, scores))
    files = candidates[0][1]
    groups = {}
    for index, f in enumerate(files):
        groups.setdefault(category(f.rel_path, args.split), []).append(index)

    report = {"split": args.split, "categories": {}, "profiles": {}}
    for name, indexes in groups.items():
        report["categories"][name] = {
            "files": len(indexes), "windows": sum(len(files[i].windows) for i in indexes)}

    def pick(indexes, scores):
        return [files[i] for i in indexes], [scores[i] for i in indexes]

    for profile_name, profile in nab.PROFILES.items():
        null_scores = [[nab.NULL_DETECTOR_SCORE] * len(f.points) for f in files]
        null_threshold, _ = nab.optimise_threshold(files, null_scores, profile)
        null_raw = sum(r["raw_score"] for r in nab.score_at(files, null_scores, profile,
                                                            null_threshold))
        perfect = sum(len(f.windows) for f in files) * profile["tpWeight"]

        def normalise(raw, null=null_raw, perfect=perfect):
            return 100.0 * (raw - null) / (perfect - null)

        entry = {"plain": {}, "held_out": {}}
        # The plain development score of each candidate: threshold chosen on all files.
        for name, _, scores in candidates:
            threshold, raw = nab.optimise_threshold(files, scores, profile)
            entry["plain"][name] = {"score": normalise(raw), "threshold": threshold}
        for fixed in (True, False):
            pool = candidates[:1] if fixed else candidates
            total = 0.0
            folds = {}
            for held, test in groups.items():
                train = [i for i in range(len(files)) if i not in test]
                best = None
                for name, _, scores in pool:
                    threshold, raw = nab.optimise_threshold(*pick(train, scores), profile)
                    if best is None or raw > best[2]:
                        best = (name, scores, raw, threshold)
                name, scores, _, threshold = best
                held_files, held_scores = pick(test, scores)
                per_file = nab.score_at(held_files, held_scores, profile, threshold)
                raw = sum(r["raw_score"] for r in per_file)
                total += raw
                fold = {"candidate": name, "threshold": threshold, "raw": raw,
                        "tp_windows": sum(r["tp_windows"] for r in per_file),
                        "fn_windows": sum(r["fn_windows"] for r in per_file),
                        "fp_rows": sum(r["fp"] for r in per_file)}
                held_perfect = sum(len(f.windows) for f in held_files) * profile["tpWeight"]
                if held_perfect:
                    null_files = [[nab.NULL_DETECTOR_SCORE] * len(f.points) for f in held_files]
                    t, _ = nab.optimise_threshold(held_files, null_files, profile)
                    held_null = sum(r["raw_score"] for r in nab.score_at(
                        held_files, null_files, profile, t))
                    fold["score"] = normalise(raw, held_null, held_perfect)
                folds[held] = fold
            key = "default" if fixed else "tuned"
            entry["held_out"][key] = {"score": normalise(total), "folds": folds}
        report["profiles"][profile_name] = entry

    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    default = candidates[0][0]
    print("categories held out in turn (%s split): %s" % (args.split, ", ".join(
        "%s (%d files, %d windows)" % (n, c["files"], c["windows"])
        for n, c in report["categories"].items())))
    print("%-20s %9s %9s %11s   %s" % ("profile", "plain", "held-out", "held-out,", "thresholds chosen without the held-out category"))
    print("%-20s %9s %9s %11s" % ("", "", "", "tuned"))
    for profile_name, entry in report["profiles"].items():
        plain = entry["plain"][default]
        fixed = entry["held_out"]["default"]
        tuned = entry["held_out"]["tuned"]
        print("%-20s %9.2f %9.2f %11.2f   %s" % (
            profile_name, plain["score"], fixed["score"], tuned["score"],
            " ".join("%.3f" % f["threshold"] for f in fixed["folds"].values())))
    print("(plain: the default settings, threshold chosen on all 28 files; held-out: each category"
          " scored at the threshold chosen on the others; tuned: the settings too, among %d"
          " candidates)" % len(candidates))
    print("per held-out category, standard profile (default settings): score, TP/FN windows, FP rows")
    for held, fold in report["profiles"]["standard"]["held_out"]["default"]["folds"].items():
        score = "%6.2f" % fold["score"] if "score" in fold else "     -"
        print("  %-24s %s  %d/%d  %d" % (held, score, fold["tp_windows"], fold["fn_windows"],
                                           fold["fp_rows"]))
    if len(candidates) > 1:
        print("settings chosen per held-out category (standard): %s" % ", ".join(
            "%s: %s" % (held, fold["candidate"]) for held, fold in
            report["profiles"]["standard"]["held_out"]["tuned"]["folds"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
