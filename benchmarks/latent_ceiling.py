"""Diagnostic: how much of the private digits the public latent backbone's autoencoder can carry.

The latent methods (dp-lora, dp-ldm) generate latents that the public autoencoder decodes, so their synthetic data
can be no better than the decoder's images of private digits. This trains the downstream classifier (the accuracy
evaluator's, same budget and seed) on the autoencoder's reconstructions of as many real private-train images per
class as a run's synthetic set has, and on the same images themselves (the leaderboard's real-data ceiling), and
tests both on the private test split.

It reads the private splits outside the DP engine, so it is a diagnostic of what limits the latent methods, never
an input to a preset, a tuning choice or a record.

    python benchmarks/latent_ceiling.py                  # 100 per class, seed 0, the shipped latent backbone
    python benchmarks/latent_ceiling.py --per-class 100 --seeds 0 1 2 --json
"""
from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=100, help="real private-train images per class")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="classifier seeds")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from dpbench.api.context import MethodContext
    from dpbench.api.registry import load_registry
    from dpbench.data.types import ImageSet
    from dpbench.eval.downstream import train_and_test
    from dpbench.run.progress import SilentProgress

    torch.set_num_threads(2)
    registry = load_registry()
    pair = registry.pair("digits-mnist")
    data = pair.load(None)
    device = torch.device("cpu")
    ctx = MethodContext(pair=pair, public=data.public_train, public_info=dict(data.info), private=None, books=None,
                        registry=registry, epsilon=0.0, delta=1e-5, seed=0, device=device, preset="default",
                        progress=SilentProgress(), cache_dir=".dpbench-cache")
    codec = registry.backbone("latent").build(ctx).codec
    train = data.private_train
    index = torch.cat([(train.labels == c).nonzero().flatten()[:args.per_class] for c in range(pair.num_classes)])
    real = train.subset(index)
    with torch.no_grad():
        decoded = ImageSet(codec.decode(codec.encode(real.images)).cpu(), real.labels)
    mse = float(((decoded.images.float() - real.images.float()) / 127.5).square().mean())
    rows = []
    for seed in args.seeds:
        start = time.perf_counter()
        row = {"seed": seed, "per_class": args.per_class,
               "accuracy_real": train_and_test(pair, real, data.private_test, preset="default", seed=seed,
                                               device=device),
               "accuracy_decoded": train_and_test(pair, decoded, data.private_test, preset="default", seed=seed,
                                                  device=device),
               "reconstruction_mse": mse}
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print("| seed | per class | real images | their autoencoder reconstructions | reconstruction MSE ([-1, 1]) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['per_class']} | {r['accuracy_real']:.1%} | {r['accuracy_decoded']:.1%} "
              f"| {r['reconstruction_mse']:.4f} |")


if __name__ == "__main__":
    main()
