"""The FID stage's Inception feature pass, new (eval.inception_features) against the one dpbench used before
(torch-fidelity's extractor in channels-last memory format, batches of 64, torch.no_grad), as a RATIO measured in
one process: the same images, A and B alternating for `--repeats` rounds, the median of each; the load average
is printed beside it, since only a ratio means anything on a shared machine. Both wall seconds and the process's
CPU seconds are compared: on a loaded machine the wall ratio swings with what else runs, the CPU ratio less.

    python benchmarks/fid_speed.py [--images 64] [--repeats 5] [--bf16] [--out benchmarks/fid_speed.json]

Also checks that the new features equal the old ones (max relative difference), and states how many images go
through Inception on a cold and a warm default run (counts, not seconds). `--bf16` adds the old path under bf16
autocast, for CPUs with native bf16 (avx512_bf16 / AMX); on others it is emulated and slower.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch


def old_extractor(weights: Path):
    """What dpbench ran before: torch-fidelity's Inception, channels-last, called on uint8 batches of 64."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights))
    model.to(memory_format=torch.channels_last)

    def features(images: torch.Tensor, autocast: bool = False) -> torch.Tensor:
        out = []
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            for start in range(0, len(images), 64):
                batch = images[start:start + 64].expand(-1, 3, -1, -1)  # torch-fidelity's input: 3 channels
                out.append(model(batch.contiguous(memory_format=torch.channels_last))[0].float())
        return torch.cat(out)

    return features


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in flags if f.startswith(("avx512_bf16", "amx")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="private-test digits pushed through each pass")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "fid_speed.json")
    args = parser.parse_args()

    from dpbench.builtins.pair_digits_mnist import load_digits_mnist
    from dpbench.eval.inception import resolve_inception_weights
    from dpbench.eval.inception_features import FEATURES_VERSION, InceptionFeatures

    images = load_digits_mnist().private_test.images[:args.images]
    with tempfile.TemporaryDirectory() as scratch:
        weights = resolve_inception_weights(Path(os.environ.get("DPBENCH_CACHE", scratch)))
        old, new = old_extractor(weights), InceptionFeatures(weights)
        variants = {"old": old, "new": new}
        if args.bf16:
            variants["old_bf16"] = lambda x: old(x, autocast=True)
        reference = old(images)
        differences = {name: float((f(images) - reference).abs().max() / reference.abs().max())
                       for name, f in variants.items()}  # also the untimed warm-up of each
        load_before = os.getloadavg()
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        cpu_seconds: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, f in variants.items():
                start, cpu_start = time.perf_counter(), time.process_time()
                f(images)
                seconds[name].append(time.perf_counter() - start)
                cpu_seconds[name].append(time.process_time() - cpu_start)
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    cpu_medians = {name: statistics.median(s) for name, s in cpu_seconds.items()}
    result = {
        "what": "old ÷ new median seconds of one Inception feature pass over the same images, in one process",
        "ratio_old_over_new": medians["old"] / medians["new"],
        "ratios_old_over_variant": {name: medians["old"] / m for name, m in medians.items()},
        "cpu_ratio_old_over_new": cpu_medians["old"] / cpu_medians["new"],
        "cpu_ratios_old_over_variant": {name: cpu_medians["old"] / m for name, m in cpu_medians.items()},
        "wall_ratio_per_round": [o / n for o, n in zip(seconds["old"], seconds["new"])],
        "max_relative_feature_difference_to_old": differences,
        "images": args.images, "image_shape": list(images.shape[1:]), "repeats": args.repeats,
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "cpu_bf16_flags": cpu_flags(), "torch": torch.__version__, "features_version": FEATURES_VERSION,
        "image_passes_default_run": {
            "cold": "1000 reference (private test) + 1000 samples, plus 8 to verify derived weights, once per cache",
            "warm": "1000 samples (the reference's features come from the cache)"},
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
