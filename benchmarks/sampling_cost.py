"""Adapter sampling cost: DDIM sampling with the adapted U-Net against the base U-Net, same DDIM steps, one run.

Three forms of each adapted model are timed, alternating with the base, median of `--repeats`:
- `trained`: the module graph the DP engine trains (LoRA/LoDA as separate layers);
- `sampling`: what the generator samples with (dpbench.models.sampling_form: LoRA merged, LoDA's base and A
  stacked into one conv);
and the FLOP lower bound of each adapter, counted by torch.utils.flop_counter on one forward (convolutions and
matmuls; elementwise work is not counted, so the bound is a lower bound).

    python benchmarks/sampling_cost.py                      # LoDA at width 16 and 64, LoRA on the latent U-Net
    python benchmarks/sampling_cost.py --images 50 --repeats 5 --json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from dpbench.builtins.backbones import LATENT_WIDTH, PIXEL_WIDTH
from dpbench.builtins.scopes import LoDAScope, LoRAScope
from dpbench.finetune.method import DiffusionSettings
from dpbench.models.autoencoder import AutoencoderConfig
from dpbench.models.diffusion import DiffusionSchedule, ddim_sample
from dpbench.models.sampling_form import for_sampling
from dpbench.models.unet import ClassConditionalUNet, UNetConfig


def base_unet(backbone: str, width: int) -> tuple[ClassConditionalUNet, tuple[int, int, int]]:
    """The default preset's U-Nets on the embedded pair (28x28, 10 classes), as dpbench.builtins.backbones builds them."""
    torch.manual_seed(0)
    if backbone == "pixel":
        return ClassConditionalUNet(UNetConfig.for_images(28, 1, 10, base_channels=width)), (1, 28, 28)
    ae = AutoencoderConfig(28, 1)
    size = ae.latent_size()
    config = UNetConfig(size, ae.latent_channels, 10, base_channels=width, channel_mults=(1, 2),
                        attention_resolutions=(size, (size + 1) // 2))
    return ClassConditionalUNet(config), (ae.latent_channels, size, size)


def adapted(model: torch.nn.Module, scope: str) -> torch.nn.Module:
    import copy

    model = copy.deepcopy(model)
    chosen = {"loda": LoDAScope(), "lora": LoRAScope()}[scope]
    chosen.apply(model, DiffusionSettings(scope=scope))
    with torch.no_grad():  # a fine-tuned adapter is non-zero; a zero B could be optimised away
        for param in model.parameters():
            if param.requires_grad:
                param.normal_(0, 0.02)
    return model.eval()


def forward_flops(model: torch.nn.Module, shape, batch: int = 2) -> int:
    x, t, y = torch.randn(batch, *shape), torch.full((batch,), 500), torch.zeros(batch, dtype=torch.long)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, t, y)
    return counter.get_total_flops()


def time_sampling(models: dict[str, torch.nn.Module], shape, images: int, ddim_steps: int, repeats: int) -> dict:
    labels = torch.arange(images) % 10
    schedule = DiffusionSchedule()
    seconds: dict[str, list[float]] = {name: [] for name in models}

    def sample(model):
        ddim_sample(model, labels, shape, schedule, steps=ddim_steps, guidance_scale=1.0, eta=1.0,
                    generator=torch.Generator().manual_seed(0), batch_size=images)

    for model in models.values():
        sample(model)  # warm-up
    for _ in range(repeats):  # alternate, so a busy moment of the shared machine hits every form alike
        for name, model in models.items():
            start = time.perf_counter()
            with torch.no_grad():
                sample(model)
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in seconds.items()}


def measure(backbone: str, scope: str, width: int, images: int, ddim_steps: int, repeats: int) -> dict:
    base, shape = base_unet(backbone, width)
    trained = adapted(base, scope)
    sampling = for_sampling(trained)
    times = time_sampling({"base": base.eval(), "trained": trained, "sampling": sampling}, shape, images,
                          ddim_steps, repeats)
    bound = forward_flops(trained, shape) / forward_flops(base, shape)
    sampling_ratio = times["sampling"] / times["base"]
    return {"backbone": backbone, "scope": scope, "width": width, "images": images, "ddim_steps": ddim_steps,
            "repeats": repeats, "seconds_base": times["base"], "seconds_trained": times["trained"],
            "seconds_sampling": times["sampling"], "ratio_trained": times["trained"] / times["base"],
            "ratio_sampling": sampling_ratio, "flop_bound": bound, "ratio_over_bound": sampling_ratio / bound}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100, help="images per sampling call")
    parser.add_argument("--ddim-steps", type=int, default=20, help="the default preset's DDIM steps")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = [("pixel", "loda", PIXEL_WIDTH["default"], args.images), ("pixel", "loda", 64, max(1, args.images // 4)),
             ("latent", "lora", LATENT_WIDTH["default"], args.images)]
    rows = [measure(backbone, scope, width, images, args.ddim_steps, args.repeats)
            for backbone, scope, width, images in cases]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"| backbone/scope | width | images × DDIM steps | base s | trained form × base | sampling form × base "
          f"| FLOP bound × base | sampling / bound |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backbone']}/{r['scope']} | {r['width']} | {r['images']} × {r['ddim_steps']} | {r['seconds_base']:.2f} "
              f"| {r['ratio_trained']:.3f} | {r['ratio_sampling']:.3f} | {r['flop_bound']:.3f} | {r['ratio_over_bound']:.3f} |")


if __name__ == "__main__":
    main()
