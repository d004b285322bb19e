"""How much the `accuracy` evaluator moves with the classifier fit alone: one finished run's synthetic.npz, the
downstream classifier trained with several seeds, each tested on the pair's private test split.

A diagnostic of the evaluator's noise: it reads the private test split, so it explains spreads and chooses
nothing.

    python benchmarks/classifier_fit_spread.py runs/digits-mnist/dp-loda/default-20e7421621/eps10/seed0 --fits 5
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from dpbench.cli import load_registry
from dpbench.data.types import ImageSet
from dpbench.eval.downstream import train_and_test
from dpbench.run.synthetic import load_synthetic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="finished generator runs (record.json, synthetic.npz)")
    parser.add_argument("--fits", type=int, default=5, help="classifier seeds 0 .. fits - 1")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    registry = load_registry()
    rows = []
    for run_dir in args.run_dirs:
        record = json.loads((run_dir / "record.json").read_text())
        pair = registry.pair(record["pair"]["name"])
        test = pair.load(None).private_test
        train = ImageSet(*load_synthetic(run_dir, record["synthetic"]))
        preset = record["preset"]
        accuracies = [train_and_test(pair, train, test, preset=preset, seed=seed, device=torch.device("cpu"))
                      for seed in range(args.fits)]
        rows.append({"run": str(run_dir), "preset": preset, "accuracies": accuracies,
                     "mean": statistics.fmean(accuracies), "stdev": statistics.stdev(accuracies)})
        if not args.json:
            print(f"{run_dir}: {' '.join(f'{a:.3f}' for a in accuracies)}  mean {rows[-1]['mean']:.3f}, "
                  f"sd {rows[-1]['stdev']:.3f}")
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
