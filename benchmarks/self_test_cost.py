"""What the DP engine's self-test (privacy.self_test) costs on the default dp-loda run's model (pixel U-Net of the
default width, LoDA rank 4, K = 1, on digits-mnist's 1x28x28 images): its FLOPs against one DP step's (128
examples, ghost), and with --time the median wall time of each on this machine (take timings on a quiet one).

    python benchmarks/self_test_cost.py [--time] [--repeats 5] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from dpbench.builtins.backbones import PIXEL_WIDTH
from dpbench.builtins.scopes import LoDAScope
from dpbench.finetune.diffusion_finetune import diffusion_batch_maker, diffusion_example_loss
from dpbench.models.diffusion import DiffusionSchedule, to_model_range
from dpbench.models.unet import ClassConditionalUNet, UNetConfig
from dpbench.privacy.per_example import build
from dpbench.privacy.self_test import self_test

EXPECTED_BATCH, STEPS, CHUNK = 128, 200, 64  # dp-loda's default preset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--time", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = ClassConditionalUNet(UNetConfig.for_images(28, 1, 10, base_channels=PIXEL_WIDTH["default"]))
    scope = LoDAScope()
    scope.apply(model, scope.Settings())
    schedule = DiffusionSchedule()
    loss, make_batch = diffusion_example_loss(schedule), diffusion_batch_maker(schedule, 1, 0.1, 10)

    def run_self_test():
        return self_test(model, loss, make_batch, to_model_range, "ghost", image_shape=(1, 28, 28), num_classes=10,
                         device=torch.device("cpu"))

    images = torch.randint(0, 256, (CHUNK, 1, 28, 28), dtype=torch.uint8)
    batch = make_batch({"x": to_model_range(images), "y": torch.arange(CHUNK) % 10}, torch.Generator().manual_seed(0))
    ghost = build("ghost", model, loss)

    def one_step():
        for _ in range(EXPECTED_BATCH // CHUNK):
            ghost.clipped_sum(batch, 1.0)

    with FlopCounterMode(display=False) as counter:
        report = run_self_test()
    test_flops = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        one_step()
    step_flops = counter.get_total_flops()
    out = {"implementation": report.implementation, "fallback": report.fallback,
           "self_test_gflop": test_flops / 1e9, "step_gflop": step_flops / 1e9,
           "self_test_in_steps_by_flops": test_flops / step_flops}
    if args.time:
        def seconds(fn):
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            return statistics.median(times)
        out.update(self_test_seconds=seconds(run_self_test), step_seconds=seconds(one_step))
        out["self_test_in_steps_by_time"] = out["self_test_seconds"] / out["step_seconds"]
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for key, value in out.items():
            print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
