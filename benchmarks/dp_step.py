"""Time a DP-SGD step against the non-private step of the same scope, side by side in one run.

Each (scope, mode) is measured in its own subprocess so that its peak memory (CUDA max allocated, or
peak RSS on a CPU) is its own. Ratios are against the non-private step of the same scope and K.

    python benchmarks/dp_step.py --k 1 4               # every method, K = 1 and K = 4
    python benchmarks/dp_step.py --methods dp-loda --batch 64 --steps 5 --json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

from bench_timing import seconds_per_call

# method -> (backbone, trainable scope); dp-sgd is the classifier baseline.
METHODS = {
    "dp-loda": ("pixel", "loda"), "dp-diffusion": ("pixel", "full"),
    "dp-ldm": ("latent", "attention"), "dp-lora": ("latent", "lora"), "dp-sgd": ("classifier", "full"),
}


def _build(method: str, device):
    """The model each method trains, at the default preset's size on the embedded pair (28x28, 10 classes)."""
    from dpbench.builtins.backbones import LATENT_WIDTH, PIXEL_WIDTH
    from dpbench.builtins.scopes import AttentionScope, FullScope, LoDAScope, LoRAScope
    from dpbench.finetune.method import DiffusionSettings
    from dpbench.models.autoencoder import AutoencoderConfig
    from dpbench.models.classifiers import build_classifier
    from dpbench.models.unet import ClassConditionalUNet, UNetConfig

    backbone, scope = METHODS[method]
    if backbone == "classifier":
        return build_classifier("cnn", 1, 28, 10).to(device), (1, 28, 28)
    if backbone == "pixel":  # as dpbench.builtins.backbones.PixelBackbone builds it
        model = ClassConditionalUNet(UNetConfig.for_images(28, 1, 10, base_channels=PIXEL_WIDTH["default"]))
        shape = (1, 28, 28)
    else:  # as dpbench.builtins.backbones.LatentBackbone builds it
        ae = AutoencoderConfig(28, 1)
        size = ae.latent_size()
        model = ClassConditionalUNet(UNetConfig(size, ae.latent_channels, 10, base_channels=LATENT_WIDTH["default"],
                                                channel_mults=(1, 2), attention_resolutions=(size, (size + 1) // 2)))
        shape = (ae.latent_channels, size, size)
    scopes = {s.name: s for s in (FullScope(), AttentionScope(), LoRAScope(), LoDAScope())}
    scopes[scope].apply(model, DiffusionSettings(backbone=backbone, scope=scope))  # the scope's default knobs
    return model.to(device), shape


def measure_one(method: str, mode: str, batch: int, steps: int, k: int, device_name: str) -> dict:
    import torch
    import torch.nn.functional as F

    from dpbench.eval.cost import peak_memory
    from dpbench.finetune.classifier import classifier_example_loss, pass_through
    from dpbench.finetune.diffusion import diffusion_batch_maker, diffusion_example_loss
    from dpbench.models.diffusion import DiffusionSchedule, diffusion_loss
    from dpbench.privacy.engine import DPSettings, PrivateTrainer

    device = torch.device(device_name)
    torch.manual_seed(0)
    model, shape = _build(method, device)
    classifier = METHODS[method][0] == "classifier"
    schedule = DiffusionSchedule()
    x_all = torch.rand((batch, *shape)) * 2 - 1
    labels = torch.arange(batch) % 10
    if classifier:
        k = 1
        loss_fn, make_batch = classifier_example_loss, pass_through
    else:
        loss_fn = diffusion_example_loss(schedule)
        make_batch = diffusion_batch_maker(schedule, k, 0.1, 10)
    # sample rate 1 (expected batch = n): every step sees the whole batch, through the engine's chunking
    settings = DPSettings(expected_batch_size=batch, steps=10 ** 6, max_grad_norm=1.0, noise_multiplicity=k,
                          physical_batch_size=batch)
    engine = PrivateTrainer(model, loss_fn, make_batch, settings, private_x=x_all, private_y=labels, epsilon=10.0,
                            delta=1e-5, device=device, seed=0)
    params = list(engine.trainable.values())
    optimizer = torch.optim.Adam(params, lr=1e-4)
    examples = {"x": x_all.to(device), "y": labels.to(device)}
    generator = torch.Generator(device=device).manual_seed(0)

    def non_private_step():
        """The same K draws per example, one ordinary backward over the whole batch."""
        example = make_batch(examples, generator)
        if classifier:
            loss = F.cross_entropy(model(example["x"]), example["y"])
        else:
            b, shp = example["x0"].shape[0], example["x0"].shape[1:]
            x0 = example["x0"].unsqueeze(1).expand(b, k, *shp).reshape(b * k, *shp)
            loss = diffusion_loss(model, x0, example["t"].reshape(-1), example["noise"].reshape(b * k, *shp),
                                  example["y"].reshape(-1), schedule).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def dp_step():
        engine.step(optimizer)

    seconds = seconds_per_call(dp_step if mode == "dp" else non_private_step, steps, device)
    return {"method": method, "scope": "/".join(METHODS[method]), "mode": mode, "k": k, "batch": batch, "seconds_per_step": seconds,
            "trainable_parameters": sum(p.numel() for p in params), **peak_memory(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--k", type=int, nargs="+", default=[1])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one", nargs=3, metavar=("METHOD", "MODE", "K"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        method, mode, k = args.one
        print(json.dumps(measure_one(method, mode, args.batch, args.steps, int(k), args.device)))
        return
    rows = []
    for method in args.methods:
        for k in ([1] if METHODS[method][0] == "classifier" else args.k):
            for mode in ("non_private", "dp"):
                out = subprocess.run([sys.executable, __file__, "--one", method, mode, str(k), "--batch", str(args.batch),
                                      "--steps", str(args.steps), "--device", args.device],
                                     capture_output=True, text=True, check=True)
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = {(r["method"], r["k"]): r for r in rows if r["mode"] == "non_private"}
    for r in rows:
        b = base[(r["method"], r["k"])]
        r["time_ratio"] = r["seconds_per_step"] / b["seconds_per_step"]
        r["memory_ratio"] = r["peak_memory_mb"] / b["peak_memory_mb"]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"| method | backbone/scope | K | mode | s/step (batch {args.batch}) | × non-private | peak MB ({rows[0]['peak_memory_kind']}) | × non-private | trainable |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['scope']} | {r['k']} | {r['mode']} | {r['seconds_per_step']:.3f} | {r['time_ratio']:.2f} | "
              f"{r['peak_memory_mb']:.0f} | {r['memory_ratio']:.2f} | {r['trainable_parameters']:,} |")


if __name__ == "__main__":
    main()
