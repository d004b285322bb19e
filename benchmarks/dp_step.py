"""Time a DP-SGD step against the non-private step of the same scope, side by side in one run.

Each (scope, mode) is measured in its own subprocess so that its peak memory (CUDA max allocated, or
peak RSS on a CPU) is its own. Ratios are against the non-private step of the same scope and K.

    python benchmarks/dp_step.py                      # the default table (LoDA and full scopes)
    python benchmarks/dp_step.py --batch 64 --steps 5 --json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

SCOPES = ("loda", "full")


def _build(scope: str, image_size: int, device):
    from dpbench.models.loda import add_loda_adapters
    from dpbench.models.unet import ClassConditionalUNet, UNetConfig

    model = ClassConditionalUNet(UNetConfig(image_size=image_size, channels=1, num_classes=10,
                                            attention_resolutions=((image_size + 3) // 4,)))
    if scope == "loda":
        add_loda_adapters(model)
    return model.to(device)


def measure_one(scope: str, mode: str, batch: int, steps: int, k: int, device_name: str) -> dict:
    import torch

    from dpbench.data.types import ImageSet
    from dpbench.eval.cost import peak_memory, reset_peak_memory
    from dpbench.finetune import diffusion_batch_maker, diffusion_example_loss
    from dpbench.models.diffusion import DiffusionSchedule, diffusion_loss
    from dpbench.privacy.engine import DPConfig, DPSGDEngine, add_gaussian_noise, clip_and_sum

    device = torch.device(device_name)
    torch.manual_seed(0)
    model = _build(scope, 28, device)
    schedule = DiffusionSchedule()
    data = ImageSet(torch.randint(0, 256, (batch, 1, 28, 28), dtype=torch.uint8), torch.arange(batch) % 10)
    make_batch = diffusion_batch_maker(data, schedule, k, 0.1, 10, device)
    loss_fn = diffusion_example_loss(schedule)
    engine = DPSGDEngine(model, loss_fn, DPConfig(10.0, 1e-5, batch, 100, 1.0, noise_multiplicity=k,
                                                  physical_batch_size=batch), batch, device, seed=0)
    params = list(engine.trainable.values())
    optimizer = torch.optim.Adam(params, lr=1e-4)
    indices = torch.arange(batch)
    generator = torch.Generator(device=device).manual_seed(0)

    def non_private_step():
        """The same K draws per example, one ordinary backward over the whole batch."""
        example = make_batch(indices, generator)
        b, shape = example["x0"].shape[0], example["x0"].shape[1:]
        x0 = example["x0"].unsqueeze(1).expand(b, k, *shape).reshape(b * k, *shape)
        loss = diffusion_loss(model, x0, example["t"].reshape(-1), example["noise"].reshape(b * k, *shape),
                              example["y"].reshape(-1), schedule).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def dp_step():
        grads = engine.per_example_grads(make_batch(indices, generator))
        summed, _ = clip_and_sum(grads, 1.0)
        noisy = add_gaussian_noise(summed, 1.0, 1.0, generator)
        for name, p in engine.trainable.items():
            p.grad = noisy[name] / batch
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step = dp_step if mode == "dp" else non_private_step
    step()  # warm-up
    reset_peak_memory(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    return {"scope": scope, "mode": mode, "k": k, "batch": batch, "seconds_per_step": seconds,
            "trainable_parameters": sum(p.numel() for p in params), **peak_memory(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--k", type=int, nargs="+", default=[1])
    parser.add_argument("--scopes", nargs="+", default=list(SCOPES), choices=SCOPES)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one", nargs=3, metavar=("SCOPE", "MODE", "K"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        scope, mode, k = args.one
        print(json.dumps(measure_one(scope, mode, args.batch, args.steps, int(k), args.device)))
        return
    rows = []
    for scope in args.scopes:
        for k in args.k:
            for mode in ("non_private", "dp"):
                out = subprocess.run([sys.executable, __file__, "--one", scope, mode, str(k), "--batch", str(args.batch),
                                      "--steps", str(args.steps), "--device", args.device],
                                     capture_output=True, text=True, check=True)
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = {(r["scope"], r["k"]): r for r in rows if r["mode"] == "non_private"}
    for r in rows:
        b = base[(r["scope"], r["k"])]
        r["time_ratio"] = r["seconds_per_step"] / b["seconds_per_step"]
        r["memory_ratio"] = r["peak_memory_mb"] / b["peak_memory_mb"]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"| scope | K | mode | s/step (batch {args.batch}) | × non-private | peak MB ({rows[0]['peak_memory_kind']}) | × non-private | trainable |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scope']} | {r['k']} | {r['mode']} | {r['seconds_per_step']:.3f} | {r['time_ratio']:.2f} | "
              f"{r['peak_memory_mb']:.0f} | {r['memory_ratio']:.2f} | {r['trainable_parameters']:,} |")


if __name__ == "__main__":
    main()
