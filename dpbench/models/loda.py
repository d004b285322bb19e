"""LoDA adapters: a frozen conv plus a low-dimensional non-linear residual, B(act(A(x))).

LoDA (Liu et al. 2023, "LoDA: Low-Dimensional Adaptation of Large Language Models") applied to every
convolution of a diffusion U-Net is DP-LoDA (Liu, Lowy, Koike-Akino, Parsons & Wang 2024, "Efficient
Differentially Private Fine-Tuning of Diffusion Models", arXiv:2406.05257).

A and B are plain nn.Conv2d, so scopes can find them by type and torch.func takes their per-example gradients
like any other layer's.
"""
from __future__ import annotations

import torch
from torch import nn

# DP-LoDA defaults (Liu et al. 2024, arXiv:2406.05257): adapter rank 4, LeakyReLU slope 0.1.
DEFAULT_RANK = 4
DEFAULT_SLOPE = 0.1


class LoDAConv2d(nn.Module):
    """base(x) + B(LeakyReLU(A(x))); A mirrors base's geometry into `rank` channels, B is a zero-init 1x1 conv."""

    def __init__(self, base: nn.Conv2d, rank: int = DEFAULT_RANK, slope: float = DEFAULT_SLOPE) -> None:
        super().__init__()
        if base.groups != 1:
            raise ValueError("LoDA adapters support ungrouped convolutions only")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.loda_a = nn.Conv2d(
            base.in_channels, rank, base.kernel_size, stride=base.stride, padding=base.padding,
            dilation=base.dilation, padding_mode=base.padding_mode, bias=False,
        )
        self.act = nn.LeakyReLU(slope)
        self.loda_b = nn.Conv2d(rank, base.out_channels, 1, bias=False)
        nn.init.zeros_(self.loda_b.weight)  # the adapted model starts identical to the pre-trained one
        self.to(device=base.weight.device, dtype=base.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.loda_b(self.act(self.loda_a(x)))

    def for_sampling(self) -> "FusedLoDAConv2d":
        return FusedLoDAConv2d(self)


class FusedLoDAConv2d(nn.Module):
    """LoDAConv2d for sampling: base and A share one conv (their weights stacked on the output channels), so the
    input is read once and the rank-r path costs its FLOPs rather than a second conv call. LeakyReLU sits between
    A and B, so unlike LoRA the adapter cannot be merged into the base weight."""

    def __init__(self, trained: LoDAConv2d) -> None:
        super().__init__()
        base, a = trained.base, trained.loda_a
        self.out_channels = base.out_channels
        self.stacked = nn.Conv2d(base.in_channels, base.out_channels + a.out_channels, base.kernel_size,
                                 stride=base.stride, padding=base.padding, dilation=base.dilation,
                                 padding_mode=base.padding_mode, bias=True)
        self.act = trained.act
        self.loda_b = trained.loda_b
        self.stacked.to(device=base.weight.device, dtype=base.weight.dtype)
        with torch.no_grad():
            self.stacked.weight.copy_(torch.cat([base.weight, a.weight]))
            base_bias = base.bias if base.bias is not None else base.weight.new_zeros(base.out_channels)
            self.stacked.bias.copy_(torch.cat([base_bias, base.weight.new_zeros(a.out_channels)]))
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        both = self.stacked(x)
        return both[:, :self.out_channels] + self.loda_b(self.act(both[:, self.out_channels:]))


def add_loda_adapters(model: nn.Module, rank: int = DEFAULT_RANK, slope: float = DEFAULT_SLOPE) -> int:
    """Wrap every nn.Conv2d of `model` in a LoDAConv2d, freeze everything else; return the trainable count."""
    if any(isinstance(m, LoDAConv2d) for m in model.modules()):
        raise ValueError("model already has LoDA adapters")
    for p in model.parameters():
        p.requires_grad_(False)
    targets = [(name, m) for name, m in model.named_modules() if type(m) is nn.Conv2d]
    for name, conv in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, LoDAConv2d(conv, rank, slope))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def loda_parameter_count(conv: nn.Conv2d, rank: int = DEFAULT_RANK) -> int:
    """Adapter parameters for one conv: A has in*r*kh*kw weights, B has r*out."""
    kh, kw = conv.kernel_size
    return conv.in_channels * rank * kh * kw + rank * conv.out_channels


def trainable_parameter_names(model: nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


def trainable_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """name -> parameter for the trainable ones (what the DP engine differentiates through functional_call)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}
