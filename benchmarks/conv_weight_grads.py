"""Per-example conv weight gradients: the ways `dpbench.privacy.per_example.layers` can build them, timed on
every LoDA adapter conv of the default preset's pixel U-Net (batch 64), one run, alternating, median of repeats.

- grouped: one weight-gradient convolution with the batch rows as groups;
- shifted: g placed at each kernel offset of a zero frame, one bmm against the padded input (any kernel);
- bmm: 1x1 stride-1 convs only, a matmul per row;
- chosen: what the engine picks (`per_row_conv_way`) for the geometry;
- batched: the non-private step's one weight gradient for the whole batch, as the baseline.

    python benchmarks/conv_weight_grads.py                 # width 16, the default preset
    python benchmarks/conv_weight_grads.py --width 64 --repeats 5 --json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from functools import partial

import torch

from dpbench.builtins.scopes import LoDAScope
from dpbench.finetune.method import DiffusionSettings
from dpbench.models.unet import ClassConditionalUNet, UNetConfig
from dpbench.privacy.per_example.layers import PER_ROW_CONV_WAYS, _pointwise, per_row_conv_way


def adapter_shapes(width: int, batch: int) -> list[tuple[torch.nn.Conv2d, torch.Tensor, torch.Tensor]]:
    """(conv, input rows, output-gradient rows) for every LoDA A and B conv, from one forward at the batch size."""
    torch.manual_seed(0)
    model = ClassConditionalUNet(UNetConfig.for_images(28, 1, 10, base_channels=width))
    LoDAScope().apply(model, DiffusionSettings(scope="loda"))
    seen = []
    convs = [m for n, m in model.named_modules() if n.endswith(("loda_a", "loda_b"))]
    handles = [m.register_forward_hook(lambda m, i, o: seen.append((m, i[0].detach(), torch.randn_like(o))))
               for m in convs]
    with torch.no_grad():
        model(torch.randn(batch, 1, 28, 28), torch.full((batch,), 500), torch.zeros(batch, dtype=torch.long))
    for h in handles:
        h.remove()
    return seen


def ways(conv, a, g):
    """The non-private batched weight gradient, then every per-row way that applies to this conv."""
    out = {"batched": lambda: torch.nn.grad.conv2d_weight(a, conv.weight.shape, g, stride=conv.stride,
                                                          padding=conv.padding, dilation=conv.dilation)}
    out.update({name: partial(way, conv, a, g) for name, way in PER_ROW_CONV_WAYS.items()
                if name != "bmm" or _pointwise(conv)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    times: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    chosen: dict[tuple, str] = {}
    layers = adapter_shapes(args.width, args.batch)
    for conv, a, g in layers:
        for fn in ways(conv, a, g).values():
            fn()  # warm-up
    for _ in range(args.repeats):
        for conv, a, g in layers:
            key = (tuple(conv.weight.shape), a.shape[2], conv.stride[0])
            chosen[key] = per_row_conv_way(conv)
            for name, fn in ways(conv, a, g).items():
                start = time.perf_counter()
                fn()
                times[key][name].append(time.perf_counter() - start)
    rows = []
    for (shape, size, stride), by_way in times.items():
        # several layers share a geometry: their calls are pooled, so a median is of all their calls
        way = chosen[(shape, size, stride)]
        medians = {f"{k}_ms": 1e3 * statistics.median(v) for k, v in by_way.items()}
        rows.append({"weight": list(shape), "input_size": size, "stride": stride,
                     "calls_per_step": len(by_way["batched"]) // args.repeats, **medians,
                     "chosen": way, "chosen_ms": medians[f"{way}_ms"]})
    totals = defaultdict(float)
    for row in rows:
        for key, value in row.items():
            if key.endswith("_ms"):
                totals[key] += value * row["calls_per_step"]
    if args.json:
        print(json.dumps({"width": args.width, "batch": args.batch, "rows": rows, "per_step_ms": totals}, indent=1))
        return
    for row in rows:
        print(row)
    print("per step (ms):", {k: round(v, 1) for k, v in totals.items()})


if __name__ == "__main__":
    main()
