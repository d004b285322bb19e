"""The copy check on the committed leaderboard's samples: each record's samples.png holds the first 10 samples of
every class of the synthetic set it scored (collect never copies synthetic.npz). Recover those uint8 images from the
grid, check that re-rendering them gives the PNG byte for byte, and run dpbench's copy check on them against the
pair's private splits. Writes copy_check_grids.json beside this script.

    python benchmarks/copy_check_grids.py [leaderboard/records]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

from dpbench.api.registry import load_registry
from dpbench.data.loading import load_checked
from dpbench.eval.memorisation import copy_check
from dpbench.run.records import SAMPLES_NAME, read_records

PER_ROW, PAD = 10, 2  # dpbench/eval/sample_grid.py's layout


def grid_samples(png_path: Path, num_classes: int, size: int) -> tuple[torch.Tensor, bool]:
    """The uint8 (N, 1, size, size) images a grid shows, and whether re-rendering them reproduces the PNG exactly."""
    png = np.asarray(Image.open(png_path).convert("RGB"))
    height, width = num_classes * (size + PAD) + PAD, PER_ROW * (size + PAD) + PAD
    rows = ((np.arange(height) + 0.5) * png.shape[0] / height).astype(int)  # each source pixel's centre
    cols = ((np.arange(width) + 0.5) * png.shape[1] / width).astype(int)
    grid = png[rows][:, cols]
    tiles = [grid[PAD + r * (size + PAD):][:size, PAD + c * (size + PAD):][:, :size, 0]
             for r in range(num_classes) for c in range(PER_ROW)]
    samples = torch.from_numpy(np.stack(tiles)).unsqueeze(1).contiguous()
    rebuilt = make_grid(samples, nrow=PER_ROW, padding=PAD, pad_value=128).permute(1, 2, 0).numpy()
    resized = Image.fromarray(grid).resize((png.shape[1], png.shape[0]), Image.NEAREST)
    return samples, bool(np.array_equal(rebuilt, grid) and np.array_equal(np.asarray(resized), png))


def main(root: Path) -> list[dict]:
    registry, splits, rows = load_registry(), {}, []
    for record in read_records(root):
        png = Path(record["_path"]).parent / SAMPLES_NAME
        pair = registry.pair(record["pair"]["name"])
        if not png.exists() or pair.channels != 1:
            continue
        if pair.name not in splits:
            splits[pair.name] = load_checked(pair, None)
        data = splits[pair.name]
        samples, exact = grid_samples(png, pair.num_classes, pair.image_size)
        check = copy_check(samples, data.private_train.images, data.private_test.images, seed=0)
        rows.append({"record": str(Path(record["_path"]).relative_to(root)), "method": record["method"]["name"],
                     "epsilon": record["privacy"]["epsilon_target"], "seed": record["seed"],
                     "grid_exact": exact, "n_samples": check.n_samples, "train_fraction": check.train_fraction,
                     "test_fraction": check.test_fraction, "excess_p_value": check.excess_p_value, "ct": check.ct,
                     "ct_cells": check.ct_cells, "cells": check.cells, "flagged": check.flagged,
                     "median_distance_to_train": check.median_distance_to_train,
                     "median_test_distance_to_train": check.median_test_distance_to_train})
        row = rows[-1]
        print(f"{row['method']:13s} eps {row['epsilon']!s:5s} seed {row['seed']} exact={exact} n={check.n_samples} "
              f"copies train {check.train_fraction:.3f} test {check.test_fraction:.3f} C_T {check.ct:.2f} "
              f"({check.ct_cells}/{check.cells} cells) flagged={check.flagged}")
    return rows


if __name__ == "__main__":
    results = main(Path(sys.argv[1] if len(sys.argv) > 1 else "leaderboard/records"))
    out = Path(__file__).with_name("copy_check_grids.json")
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")
