"""LoRA adapters (Hu et al. 2022): a frozen layer plus a low-rank linear update, (alpha / r) * B(A(x)).

DP-LoRA (Tsai et al., "Differentially Private Fine-Tuning of Diffusion Models") puts them on a latent
diffusion U-Net's attention and projection layers. Here the targets are the attention blocks' 1x1 q/k/v/out
convs (a 1x1 conv is a per-pixel linear layer) and every nn.Linear (the time-embedding MLP and each ResBlock's
embedding projection). A and B are plain layers so per-example gradients need no special support.
"""
from __future__ import annotations

import torch
from torch import nn

DEFAULT_RANK = 4
DEFAULT_ALPHA = 4.0  # alpha = r gives scale 1, the common default of LoRA implementations (Hu et al. 2022 tune it)


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.lora_a = nn.Linear(base.in_features, rank, bias=False)
        self.lora_b = nn.Linear(rank, base.out_features, bias=False)
        nn.init.zeros_(self.lora_b.weight)  # B = 0: the adapted model starts as the pre-trained one
        self.scale = alpha / rank
        self.to(device=base.weight.device, dtype=base.weight.dtype)

    def forward(self, x):
        return self.base(x) + self.scale * self.lora_b(self.lora_a(x))

    def for_sampling(self) -> nn.Linear:
        """One Linear with W + scale * B A: LoRA is linear, so sampling pays nothing for the adapter."""
        merged = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        merged.to(device=self.base.weight.device, dtype=self.base.weight.dtype)
        with torch.no_grad():
            merged.weight.copy_(self.base.weight + self.scale * self.lora_b.weight @ self.lora_a.weight)
            if self.base.bias is not None:
                merged.bias.copy_(self.base.bias)
        return merged.requires_grad_(False)


class LoRAConv1x1(nn.Module):
    def __init__(self, base: nn.Conv2d, rank: int, alpha: float) -> None:
        super().__init__()
        if base.kernel_size != (1, 1) or base.groups != 1:
            raise ValueError("LoRA here wraps ungrouped 1x1 convolutions only")
        self.base = base
        self.lora_a = nn.Conv2d(base.in_channels, rank, 1, bias=False)
        self.lora_b = nn.Conv2d(rank, base.out_channels, 1, bias=False)
        nn.init.zeros_(self.lora_b.weight)
        self.scale = alpha / rank
        self.to(device=base.weight.device, dtype=base.weight.dtype)

    def forward(self, x):
        return self.base(x) + self.scale * self.lora_b(self.lora_a(x))

    def for_sampling(self) -> nn.Conv2d:
        """One 1x1 conv with W + scale * B A (a 1x1 conv is a per-pixel linear map)."""
        merged = nn.Conv2d(self.base.in_channels, self.base.out_channels, 1, bias=self.base.bias is not None)
        merged.to(device=self.base.weight.device, dtype=self.base.weight.dtype)
        update = self.lora_b.weight.flatten(1) @ self.lora_a.weight.flatten(1)
        with torch.no_grad():
            merged.weight.copy_(self.base.weight + self.scale * update.view_as(self.base.weight))
            if self.base.bias is not None:
                merged.bias.copy_(self.base.bias)
        return merged.requires_grad_(False)


def lora_targets(model: nn.Module) -> list[str]:
    """Names of the layers LoRA wraps: attention projections (1x1 convs inside attention blocks) and Linears."""
    from dpbench.models.unet import AttentionBlock

    attention_prefixes = [name + "." for name, m in model.named_modules() if isinstance(m, AttentionBlock)]
    names = []
    for name, m in model.named_modules():
        if type(m) is nn.Linear:
            names.append(name)
        elif type(m) is nn.Conv2d and m.kernel_size == (1, 1) and any(name.startswith(p) for p in attention_prefixes):
            names.append(name)
    return names


def add_lora_adapters(model: nn.Module, rank: int = DEFAULT_RANK, alpha: float = DEFAULT_ALPHA) -> int:
    """Freeze `model`, wrap its attention and projection layers with LoRA; return the trainable count."""
    for p in model.parameters():
        p.requires_grad_(False)
    for name in lora_targets(model):
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        base = getattr(parent, attr)
        wrapped = LoRALinear(base, rank, alpha) if isinstance(base, nn.Linear) else LoRAConv1x1(base, rank, alpha)
        setattr(parent, attr, wrapped)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
