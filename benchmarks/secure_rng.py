"""What `--secure-rng` costs per DP step: one step's noise (one normal per trainable parameter) and Poisson
sampling (one uniform per private example), secure (os.urandom) against seeded (torch generator).

    python benchmarks/secure_rng.py [--repeats 7] [--json]

Parameter counts are the default preset's trainable scopes on digits-mnist; 4,000 private examples.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from dpbench.privacy.randomness import engine_randomness

SCOPES = {"dp-loda (loda)": 29_544, "dp-diffusion (full)": 201_793, "dp-sgd (classifier)": 421_834}
N_PRIVATE = 4000


def seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cpu = torch.device("cpu")
    rows = []
    for scope, params in SCOPES.items():
        row = {"scope": scope, "parameters": params}
        for kind in ("seeded", "secure"):
            source = engine_randomness(kind, 0, 0, cpu)
            row[f"{kind}_s"] = seconds(lambda: (source.normal((params,), cpu, torch.float32),
                                                source.uniform(N_PRIVATE)), args.repeats)
        row["ratio"] = row["secure_s"] / row["seeded_s"]
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        print(f"{r['scope']:22} {r['parameters']:>8,} params  seeded {1000 * r['seeded_s']:7.2f} ms  "
              f"secure {1000 * r['secure_s']:7.2f} ms  ({r['ratio']:.1f}x)")


if __name__ == "__main__":
    main()
