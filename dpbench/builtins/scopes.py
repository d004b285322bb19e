"""The built-in trainable scopes: which parameters of a pre-trained diffusion U-Net DP fine-tuning may change.

- full: every parameter (DP-Diffusion: Ghalebikesabi et al. 2023; DPDM: Dockhorn et al. 2023).
- attention: the self-attention blocks (norm, q, k, v, out) and the class-conditioning embedder
  (DP-LDM: Lyu et al. 2023); `scope.blocks` picks which of the U-Net's parts ("down", "mid", "up") are tuned.
- lora: LoRA on attention and projection layers (DP-LoRA: Tsai et al. 2024).
- loda: LoDA conv adapters (DP-LoDA: Liu et al. 2024).

Each declares its per-example implementation and its chunking from `python benchmarks/dp_step.py --k 1 4 --impl
ghost` (benchmarks/RESULTS.md, "DP step by implementation (issue 12)" and "K = 4 with whole-example chunks"). DP
step time over the non-private step, with ghost, one run: K = 1 loda 1.25, full 1.33, attention 1.19, lora 1.14;
K = 4 loda 1.21, full 1.24, attention 1.09, lora 1.10. At K = 4, chunks of rows / of whole examples: loda 1.29 /
1.49, full 1.28 / 1.37, attention 1.70 / 1.48, lora 1.72 / 1.19: the pixel U-Net's scopes lose nothing to the
smaller chunks and keep their memory flat (peak RSS 0.67x / 0.79x the non-private K = 4 step); the small latent
U-Net pays each chunk's fixed per-layer cost, and its memory is flat either way.
"""
from dataclasses import dataclass

import dpbench

UNET_PARTS = ("down", "mid", "up")


def parse_parts(spec: str) -> tuple[str, ...]:
    """"all" or a "+"-joined subset of down/mid/up, e.g. "mid+up"."""
    parts = UNET_PARTS if spec == "all" else tuple(p.strip() for p in spec.split("+"))
    unknown = [p for p in parts if p not in UNET_PARTS]
    if unknown or not parts:
        raise ValueError(f"scope.blocks must be 'all' or a '+'-joined subset of {UNET_PARTS}, got '{spec}'")
    return parts


@dataclass(frozen=True)
class AttentionSettings:
    blocks: str = dpbench.setting("all", "attention blocks tuned: 'all' or a '+'-joined subset of down/mid/up")


@dataclass(frozen=True)
class LoRASettings:
    # rank 4, alpha 4: DP-LoRA's adapter settings (Tsai et al. 2024)
    rank: int = dpbench.setting(4, "LoRA rank r", minimum=1)
    alpha: float = dpbench.setting(4.0, "LoRA scale alpha (update scaled by alpha / r)", above=0)


@dataclass(frozen=True)
class LoDASettings:
    # rank 4 and LeakyReLU slope 0.1: DP-LoDA's adapter settings (Liu et al. 2024, arXiv:2406.05257)
    rank: int = dpbench.setting(4, "LoDA adapter rank r", minimum=1)
    slope: float = dpbench.setting(0.1, "LeakyReLU negative slope inside LoDA adapters")


class FullScope(dpbench.Scope):
    name = "full"
    description = "every parameter of the backbone"
    reference = "Ghalebikesabi et al. 2023; Dockhorn et al. 2023 (DPDM)"
    per_example, chunking = "ghost", "rows"

    def apply(self, model, settings):
        model.requires_grad_(True)


class AttentionScope(dpbench.Scope):
    name = "attention"
    description = "self-attention blocks (by `scope.blocks`) and the class embedder"
    reference = "Lyu et al. 2023, DP-LDM, arXiv:2305.15759"
    Settings = AttentionSettings
    per_example, chunking = "ghost", "examples"

    def validate(self, settings):
        parse_parts(settings.blocks)

    def apply(self, model, settings):
        from dpbench.models.unet import AttentionBlock

        parts = parse_parts(settings.blocks)
        model.requires_grad_(False)
        for name, module in model.named_modules():
            if isinstance(module, AttentionBlock) and name.split(".")[0] in parts:
                module.requires_grad_(True)
        model.get_submodule("class_embed").requires_grad_(True)


class LoRAScope(dpbench.Scope):
    name = "lora"
    description = "LoRA (rank `scope.rank`, scale `scope.alpha`) on attention and projection layers; base frozen"
    reference = "Tsai et al. 2024, DP-LoRA"
    Settings = LoRASettings
    per_example, chunking = "ghost", "examples"

    def apply(self, model, settings):
        from dpbench.models.lora import add_lora_adapters

        add_lora_adapters(model, rank=settings.rank, alpha=settings.alpha)


class LoDAScope(dpbench.Scope):
    name = "loda"
    description = "LoDA conv adapters (rank `scope.rank`, LeakyReLU `scope.slope`) beside every conv; base frozen"
    reference = "Liu et al. 2024, DP-LoDA, arXiv:2406.05257"
    Settings = LoDASettings
    per_example, chunking = "ghost", "rows"

    def apply(self, model, settings):
        from dpbench.models.loda import add_loda_adapters

        add_loda_adapters(model, rank=settings.rank, slope=settings.slope)


@dpbench.hookimpl
def dpbench_register_scopes(register):
    for scope in (FullScope(), AttentionScope(), LoRAScope(), LoDAScope()):
        register(scope)
