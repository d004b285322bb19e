"""One setting's values compared on the public proxy task, over several seeds, paired by seed.

`dpbench tune` scores each candidate with one seed, and one proxy trial varies by a few points between seeds, so
it cannot tell apart settings whose effect is smaller than that. This benchmark runs the tune's own trial
(`dpbench.tune.protocol`: the proxy split of the PUBLIC data, the real run's sample rate, the accuracy evaluator
on the proxy-test part) for each value of one setting and each seed, and reports each value's mean and the mean
difference to the first value with its 95% interval over the seeds. No private data is read.

`--classifier-fits N` scores each trial by the mean accuracy of N classifier fits on its own synthetic set (as
`dpbench tune --classifier-fits N`), so the paired intervals show how much of a trial's spread is the single
classifier fit rather than the fine-tuning.

    python benchmarks/proxy_ablation.py --method dp-loda --setting min_timestep --values 0 300 --seeds 0 1 2 3
    python benchmarks/proxy_ablation.py --method dp-loda --setting ddim_steps --values 20 50 --json
    python benchmarks/proxy_ablation.py --method dp-loda --setting ddim_steps --values 20 50 --classifier-fits 5
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from scipy import stats

from dpbench.api.settings import as_dict
from dpbench.cli import load_registry
from dpbench.run.progress import make_progress
from dpbench.run.runner import RunRequest, resolve
from dpbench.tune.protocol import SCORE_METRIC, Trial, run_trial
from dpbench.tune.proxy import ProxySplit, proxy_pair_data


def paired_difference(first: list[float], other: list[float]) -> dict:
    """Mean of other - first over the seeds, with a two-sided 95% t interval."""
    diffs = [b - a for a, b in zip(first, other)]
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return {"mean": mean, "ci95": None}
    half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return {"mean": mean, "ci95": [mean - half, mean + half]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", required=True)
    parser.add_argument("--pair", default="digits-mnist")
    parser.add_argument("--setting", required=True, help="the setting compared (a `--set` key of the method)")
    parser.add_argument("--values", nargs="+", required=True, help="its values; the first is the reference")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    parser.add_argument("--eps", type=float, default=10.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--cache-dir", type=Path, default=Path(".dpbench-cache"))
    parser.add_argument("--classifier-fits", type=int, default=1,
                        help="score each trial by the mean accuracy of this many classifier fits on its synthetic set")
    parser.add_argument("--json", action="store_true", help="print the rows and the summary as JSON")
    args = parser.parse_args()

    registry = load_registry()
    data = registry.pair(args.pair).load(None)
    n_private = len(data.private_train)  # the real split's size only: it sets the proxy's sample rate
    proxy = proxy_pair_data(data.public_train, ProxySplit(), data.info)
    del data
    rows = []
    for seed in args.seeds:
        request = RunRequest(method=args.method, pair=args.pair, epsilon=args.eps, delta=args.delta, seed=seed,
                             preset="default", out=args.out / "trials", device="cpu", cache_dir=args.cache_dir,
                             evaluators=[SCORE_METRIC], rebuild_backbone=True)
        base = as_dict(resolve(registry, request).settings)
        for value in args.values:
            trial = Trial(overrides={args.setting: value})
            with make_progress() as progress:
                run_trial(registry, request, base, trial, proxy, n_private, progress, args.classifier_fits)
            if trial.score is None:
                raise SystemExit(f"trial {args.setting}={value} seed {seed} failed: {trial.error}")
            rows.append({"seed": seed, "value": value, "score": trial.score, "fits": trial.fits or [trial.score],
                         "seconds": trial.seconds})
    by_value = {v: [r["score"] for r in rows if r["value"] == v] for v in args.values}
    reference = by_value[args.values[0]]
    summary = [{"value": v, "mean": statistics.fmean(s), "scores": s,
                "difference_to_first": paired_difference(reference, s)} for v, s in by_value.items()]
    document = {"method": args.method, "pair": args.pair, "setting": args.setting, "epsilon": args.eps,
                "delta": args.delta, "seeds": args.seeds, "classifier_fits": args.classifier_fits,
                "score": f"{SCORE_METRIC} on the proxy test split, mean of the classifier fits",
                "rows": rows, "summary": summary}
    if args.json:
        print(json.dumps(document, indent=2))
        return
    for entry in summary:
        diff = entry["difference_to_first"]
        interval = f" [{diff['ci95'][0]:+.3f}, {diff['ci95'][1]:+.3f}]" if diff["ci95"] else ""
        print(f"{args.setting}={entry['value']}: mean {entry['mean']:.3f} over {len(entry['scores'])} seeds, "
              f"{diff['mean']:+.3f}{interval} against {args.values[0]}")


if __name__ == "__main__":
    main()
