"""Trainable scopes: which parameters of a pre-trained diffusion U-Net DP fine-tuning may change.

Each scope freezes the rest of the model and returns the trainable parameter count.
- full: every parameter (DP-Diffusion: Ghalebikesabi et al. 2023; DPDM: Dockhorn et al. 2023).
- attention: the self-attention blocks (norm, q, k, v, out) and the class-conditioning embedder
  (DP-LDM: Lyu et al. 2023); `attention_blocks` picks which of the U-Net's parts ("down", "mid", "up") are tuned.
- lora: LoRA on attention and projection layers (DP-LoRA: Tsai et al.).
- loda: LoDA conv adapters (DP-LoDA: Liu et al. 2024).
"""
from __future__ import annotations

from torch import nn

from dpbench.models.loda import add_loda_adapters
from dpbench.models.lora import add_lora_adapters
from dpbench.models.unet import AttentionBlock

SCOPES = ("full", "attention", "lora", "loda")
UNET_PARTS = ("down", "mid", "up")


def parse_parts(spec: str) -> tuple[str, ...]:
    """"all" or a "+"-joined subset of down/mid/up, e.g. "mid+up"."""
    parts = UNET_PARTS if spec == "all" else tuple(p.strip() for p in spec.split("+"))
    unknown = [p for p in parts if p not in UNET_PARTS]
    if unknown or not parts:
        raise ValueError(f"attention_blocks must be 'all' or a '+'-joined subset of {UNET_PARTS}, got '{spec}'")
    return parts


def apply_scope(model: nn.Module, scope: str, *, rank: int = 4, slope: float = 0.1, lora_alpha: float = 4.0,
                attention_blocks: str = "all") -> int:
    if scope == "full":
        for p in model.parameters():
            p.requires_grad_(True)
    elif scope == "attention":
        parts = parse_parts(attention_blocks)
        for p in model.parameters():
            p.requires_grad_(False)
        for name, module in model.named_modules():
            if isinstance(module, AttentionBlock) and name.split(".")[0] in parts:
                module.requires_grad_(True)
        model.get_submodule("class_embed").requires_grad_(True)
    elif scope == "lora":
        add_lora_adapters(model, rank=rank, alpha=lora_alpha)
    elif scope == "loda":
        add_loda_adapters(model, rank=rank, slope=slope)
    else:
        raise ValueError(f"unknown scope '{scope}', expected one of {SCOPES}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
