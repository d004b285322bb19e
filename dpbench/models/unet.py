"""A small class-conditional U-Net noise predictor (DDPM-style, Ho et al. 2020, with a lighter decoder).

Every layer is vmap-friendly so the DP engine can take per-example gradients with torch.func:
GroupNorm instead of BatchNorm, no in-place ops, no data-dependent control flow. Convolutions are plain
nn.Conv2d (attention q/k/v/out included) so adapter scopes can find and wrap them by type.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dpbench.storage import cache_key

ARCH_VERSION = 1  # part of UNetConfig.key(): bump when a change to this file changes what a config builds


@dataclass(frozen=True)
class UNetConfig:
    image_size: int
    channels: int
    num_classes: int
    # 16, not 32: at 28x28 the full-resolution convs dominate; forward+backward at batch 64 costs ~45 GFLOP
    # with 32 against ~11.5 GFLOP (~0.18 s on 2 CPU cores) with 16, and the benchmark budget is CPU minutes.
    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = (7,)  # feature-map sizes (H) that get self-attention
    dropout: float = 0.0
    groups: int = 8

    def __post_init__(self) -> None:  # lists from JSON configs become tuples so the config stays hashable
        object.__setattr__(self, "channel_mults", tuple(int(m) for m in self.channel_mults))
        object.__setattr__(self, "attention_resolutions", tuple(int(r) for r in self.attention_resolutions))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channel_mults"] = list(self.channel_mults)
        d["attention_resolutions"] = list(self.attention_resolutions)
        return d

    def key(self) -> str:
        """A stable string naming this architecture (for cache keys)."""
        return "unet-" + cache_key({"arch": ARCH_VERSION, **self.to_dict()})

    @classmethod
    def for_images(cls, image_size: int, channels: int, num_classes: int, **overrides) -> "UNetConfig":
        """The default config for an image size: self-attention at the coarsest U-Net level."""
        mults = tuple(overrides.get("channel_mults", cls.channel_mults))
        coarsest = cls(image_size, channels, num_classes, channel_mults=mults).feature_sizes()[-1]
        overrides.setdefault("attention_resolutions", (coarsest,))
        return cls(image_size, channels, num_classes, **overrides)

    def feature_sizes(self) -> list[int]:
        """The spatial size at each level (stride-2 conv with padding 1: ceil(s / 2))."""
        sizes = [self.image_size]
        for _ in self.channel_mults[1:]:
            sizes.append((sizes[-1] + 1) // 2)
        return sizes


def _norm(groups: int, ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, ch), ch)


class SinusoidalEmbedding(nn.Module):
    """Transformer-style sinusoidal embedding of the (integer) timestep (Vaswani et al. 2017)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        half = dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(10000.0) * torch.arange(half) / half), persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = t.float()[:, None] * self.freqs[None, :]
        return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = _norm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2 = _norm(groups, out_ch)
        # p=0 skips the dropout op entirely, so vmap needs no randomness mode by default.
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Single-head spatial self-attention with 1x1-conv projections (q, k, v, proj_out)."""

    def __init__(self, ch: int, groups: int) -> None:
        super().__init__()
        self.norm = _norm(groups, ch)
        self.q = nn.Conv2d(ch, ch, 1)
        self.k = nn.Conv2d(ch, ch, 1)
        self.v = nn.Conv2d(ch, ch, 1)
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = self.norm(x)
        q = self.q(n).reshape(b, c, h * w)
        k = self.k(n).reshape(b, c, h * w)
        v = self.v(n).reshape(b, c, h * w)
        attn = torch.softmax(torch.matmul(q.transpose(1, 2), k) / math.sqrt(c), dim=-1)  # (b, hw, hw)
        out = torch.matmul(v, attn.transpose(1, 2)).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        # Upsample to the skip's size rather than x2, so odd sizes (7 -> 4 -> 7) line up.
        return self.conv(F.interpolate(x, size=size, mode="nearest"))


class ClassConditionalUNet(nn.Module):
    """eps-prediction U-Net: forward(x in [-1, 1] (B, C, H, W), t int (B,), y int (B,)) -> eps (B, C, H, W).

    Label index `num_classes` is the null class used for classifier-free guidance (Ho & Salimans 2022).
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        cfg = config
        ch0 = cfg.base_channels
        emb_dim = 4 * ch0  # 4x base width for the embedding MLP, as in DDPM (Ho et al. 2020)
        self.null_class = cfg.num_classes
        self.time_embed = SinusoidalEmbedding(ch0)
        self.time_mlp = nn.Sequential(nn.Linear(ch0, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_embed = nn.Embedding(cfg.num_classes + 1, emb_dim)

        # Skips come from ResBlock outputs only and each level's decoder has num_res_blocks blocks (DDPM has
        # one more per level, fed by conv_in/downsample outputs); upsampling convs also narrow to the next
        # level's width. At 28x28 this halves the full-resolution decoder, which dominates the cost.
        sizes = cfg.feature_sizes()
        widths = [ch0 * m for m in cfg.channel_mults]
        self.conv_in = nn.Conv2d(cfg.channels, ch0, 3, padding=1)
        self.down = nn.ModuleList()
        skip_chs = []
        ch = ch0
        for level, width in enumerate(widths):
            for _ in range(cfg.num_res_blocks):
                self.down.append(self._block(ch, width, emb_dim, sizes[level]))
                ch = width
                skip_chs.append(ch)
            if level < len(widths) - 1:
                self.down.append(Downsample(ch))

        self.mid = nn.ModuleList([
            ResBlock(ch, ch, emb_dim, cfg.groups, cfg.dropout),
            AttentionBlock(ch, cfg.groups),
            ResBlock(ch, ch, emb_dim, cfg.groups, cfg.dropout),
        ])

        self.up = nn.ModuleList()
        for level in reversed(range(len(widths))):
            for _ in range(cfg.num_res_blocks):
                self.up.append(self._block(ch + skip_chs.pop(), widths[level], emb_dim, sizes[level]))
                ch = widths[level]
            if level > 0:
                self.up.append(Upsample(ch, widths[level - 1]))
                ch = widths[level - 1]

        self.norm_out = _norm(cfg.groups, ch)
        self.conv_out = nn.Conv2d(ch, cfg.channels, 3, padding=1)

    def _block(self, in_ch: int, out_ch: int, emb_dim: int, size: int) -> nn.Module:
        res = ResBlock(in_ch, out_ch, emb_dim, self.config.groups, self.config.dropout)
        if size in self.config.attention_resolutions:
            return _ResAttn(res, AttentionBlock(out_ch, self.config.groups))
        return _ResAttn(res, None)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(self.time_embed(t)) + self.class_embed(y)
        h = self.conv_in(x)
        skips = []
        for layer in self.down:
            if isinstance(layer, Downsample):
                h = layer(h)
            else:
                h = layer(h, emb)
                skips.append(h)
        h = self.mid[0](h, emb)
        h = self.mid[1](h)
        h = self.mid[2](h, emb)
        for layer in self.up:
            if isinstance(layer, Upsample):
                h = layer(h, skips[-1].shape[-2:])  # the next skip is at the finer level
            else:
                h = layer(torch.cat([h, skips.pop()], dim=1), emb)
        return self.conv_out(F.silu(self.norm_out(h)))


class _ResAttn(nn.Module):
    """A ResBlock optionally followed by self-attention (one U-Net stage unit)."""

    def __init__(self, res: ResBlock, attn: AttentionBlock | None) -> None:
        super().__init__()
        self.res = res
        self.attn = attn

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.res(x, emb)
        return self.attn(h) if self.attn is not None else h
