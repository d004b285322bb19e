"""How much the `accuracy` evaluator moves by itself: one finished run's synthetic.npz, re-scored with several
evaluation seeds; for each N, the evaluator with N classifier fits (the mean of the first N of that seed's fits,
as dpbench.eval.downstream.score_fits draws them) and its standard deviation over the evaluation seeds.

A diagnostic of the evaluator's noise: it reads the private test split, so it explains spreads and chooses only
the number of fits (never a method's setting).

    python benchmarks/classifier_fit_spread.py RUN_DIR --eval-seeds 0 1 2 3 4 --fits 5 --n 1 3 5 --out spread.json

Evaluation seeds can be split over processes (`--eval-seeds 0 1 2 --out a.json`, `--eval-seeds 3 4 --out b.json`)
and their fits combined afterwards: `--combine a.json b.json --n 1 3 5 --out spread.json`.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import torch
from scipy.stats import chi2

from dpbench.api.registry import load_registry
from dpbench.data.types import ImageSet
from dpbench.eval.downstream import CLASSIFIER_FITS, DOWNSTREAM_TRAINING, fit_seeds, train_and_test
from dpbench.run.synthetic import load_synthetic


def sd_interval(values: list[float]) -> list[float] | None:
    """The 95% interval of a normal sample's standard deviation (chi-square with n - 1 degrees of freedom)."""
    if len(values) < 2:
        return None
    dof, sd = len(values) - 1, statistics.stdev(values)
    return [sd * math.sqrt(dof / chi2.ppf(0.975, dof)), sd * math.sqrt(dof / chi2.ppf(0.025, dof))]


def spread(fits_by_seed: list[list[float]], sizes: list[int]) -> dict:
    """For each N: the evaluator's score at every evaluation seed (mean of its first N fits) and their SD; the SD of
    one fit over every fit drawn (all seeds pooled), with what independent fits predict for N, SD₁ / √N; and the SD
    of the means of disjoint groups of N pooled fits (every fit has a seed of its own, so a group of N is an
    evaluator with N fits; this also covers an N larger than the fits drawn per seed)."""
    pooled = [a for fits in fits_by_seed for a in fits]
    sd_one = statistics.stdev(pooled) if len(pooled) > 1 else math.nan
    one_interval = sd_interval(pooled)
    rows = {}
    for n in sizes:
        scores = [statistics.fmean(fits[:n]) for fits in fits_by_seed if len(fits) >= n]
        groups = [statistics.fmean(pooled[i:i + n]) for i in range(0, len(pooled) - n + 1, n)]
        rows[str(n)] = {"scores": scores, "repetitions": len(scores),
                        "mean": statistics.fmean(scores) if scores else math.nan,
                        "sd": statistics.stdev(scores) if len(scores) > 1 else math.nan,
                        "sd_ci95": sd_interval(scores),
                        "sd_predicted": sd_one / math.sqrt(n),
                        "sd_predicted_ci95": [b / math.sqrt(n) for b in one_interval] if one_interval else None,
                        "groups": len(groups), "sd_disjoint_groups": statistics.stdev(groups) if len(groups) > 1
                        else math.nan}
    return {"sd_one_fit_pooled": sd_one, "fits_pooled": len(pooled), "by_n": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, nargs="?", help="a finished generator run (record.json, synthetic.npz)")
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=list(range(10)), help="evaluation seeds")
    parser.add_argument("--combine", type=Path, nargs="+", default=None,
                        help="fit nothing: combine the fits of earlier --out files (of one run) and report")
    parser.add_argument("--fits", type=int, default=5, help="classifier fits drawn per evaluation seed (the largest N)")
    parser.add_argument("--n", type=int, nargs="+", default=[1, 3, 5],
                        help="evaluator sizes N to report (an N above --fits is measured on disjoint groups only)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--extend", type=Path, default=None,
                        help="an earlier --out of this run: keep its fits and draw only fits beyond them, up to --fits")
    parser.add_argument("--out", type=Path, default=None, help="JSON written after every evaluation seed")
    args = parser.parse_args()
    if args.combine:
        documents = [json.loads(path.read_text()) for path in args.combine]
        document = {**documents[0], "fits_by_eval_seed": {k: v for d in documents for k, v in d["fits_by_eval_seed"].items()}}
        if len({d["run"] for d in documents}) > 1:
            parser.error("--combine: the files score different runs")
    else:
        if args.run_dir is None:
            parser.error("a run folder is needed (or --combine)")
        document = fit_all(args)
    document["spread"] = spread(list(document["fits_by_eval_seed"].values()), args.n)
    if args.out is not None:
        args.out.write_text(json.dumps(document, indent=2) + "\n")
    for n, row in document["spread"]["by_n"].items():
        interval = "[{:.4f}, {:.4f}]".format(*row["sd_ci95"]) if row["sd_ci95"] else "n/a"
        print(f"N = {n}: mean {row['mean']:.4f}, sd {row['sd']:.4f} {interval} over {row['repetitions']} evaluation "
              f"seeds; sd {row['sd_disjoint_groups']:.4f} over {row['groups']} disjoint groups of pooled fits; one "
              f"fit's sd / sqrt(N): {row['sd_predicted']:.4f}")


def fit_all(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    record = json.loads((args.run_dir / "record.json").read_text())
    pair = load_registry().pair(record["pair"]["name"])
    test = pair.load(None).private_test
    train = ImageSet(*load_synthetic(args.run_dir, record["synthetic"]))
    preset = record["preset"]
    document = {"run": str(args.run_dir), "method": record["method"]["name"],
                "epsilon": record["privacy"]["epsilon_target"], "seed": record["seed"], "preset": preset,
                "n_train": len(train), "n_test": len(test), "training": DOWNSTREAM_TRAINING[preset],
                "default_fits": CLASSIFIER_FITS[preset], "fits_by_eval_seed": {}}
    if args.extend is not None:  # an earlier --out of the same run: its fits are kept, only later fits are drawn
        document["fits_by_eval_seed"] = json.loads(args.extend.read_text())["fits_by_eval_seed"]
    for seed in args.eval_seeds:
        fits = document["fits_by_eval_seed"].get(str(seed), [])[:args.fits]
        for fit_seed in fit_seeds(seed, args.fits)[len(fits):]:  # the evaluator's own fit i, as score_fits draws it
            fits.append(train_and_test(pair, train, test, preset=preset, seed=fit_seed, device=torch.device("cpu")))
        document["fits_by_eval_seed"][str(seed)] = fits
        print(f"eval seed {seed}: {' '.join(f'{a:.4f}' for a in fits)}", flush=True)
        if args.out is not None:  # after every seed, so that a killed run keeps what it measured
            args.out.write_text(json.dumps(document, indent=2) + "\n")
    return document


if __name__ == "__main__":
    main()
