"""Layer-wise per-example gradients from one ordinary batched forward and backward.

A forward hook on every layer that owns a trainable parameter keeps its input a and output; one backward of the
summed per-example losses gives each layer's output gradient g, row by row. Example b's gradient of a layer is
built from its rows alone (K consecutive rows when the loss averages K draws: the K rows are summed, i.e. the
gradient of the mean over K, before the norm is taken), so clipping is per example, never per row.

- hooks (ghost=False): every layer's per-example gradient is materialised by Opacus's grad samplers, the
  per-layer maths of Opacus's hooks.
- ghost (ghost=True): for Linear and Conv2d layers, per layer, whichever is cheaper: the ghost norm
  ||sum_t g_t a_t^T||^2 = <a a^T, g g^T> without the per-example gradient (Goodfellow 2015; Li et al. 2022,
  "Large language models can be strong differentially private learners"), or the per-example gradient
  itself (Bu et al. 2022, "Scalable and efficient training of large convolutional neural networks with
  differential privacy": mixed ghost clipping). The clipped sum is then sum_b w_b g_b^T a_b, one matmul on the
  kept a and g with no second backward (Bu et al. 2023, "Differentially private optimization on large model
  at small cost": book-keeping). Other layer types (GroupNorm, Embedding) are materialised as in hooks.

A non-finite example is handled through its norm: any NaN/inf in its rows makes its norm non-finite, so it gets
weight 0 and its rows of a and g are zeroed before the weighted sum (0 * inf would be NaN).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from opacus.grad_sample.grad_sample_module import GradSampleModule
from torch import nn

from dpbench.privacy.per_example.base import ClippedSum, example_weights, zero_rows

GRAD_SAMPLERS = GradSampleModule.GRAD_SAMPLERS  # nn.Module type -> Opacus's per-example gradient rule


def _trainable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules()
            if any(p.requires_grad for p in m.parameters(recurse=False))]


def unsupported_parameters(model: nn.Module) -> list[str]:
    """Trainable parameters owned by a layer type without a per-example rule (Opacus's grad samplers), or every
    one when a layer mixes the batch's examples (batch norm): rows would no longer be one example's alone."""
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return [n for n, p in model.named_parameters() if p.requires_grad]
    out = []
    for name, m in _trainable_layers(model):
        if type(m) not in GRAD_SAMPLERS or (isinstance(m, nn.Conv2d) and m.padding_mode != "zeros"):
            out += [f"{name}.{p}" for p, v in m.named_parameters(recurse=False) if v.requires_grad]
    return out


class LayerwiseGradients:
    def __init__(self, model: nn.Module, batched_loss, *, ghost: bool) -> None:
        self.model, self.batched_loss, self.ghost = model, batched_loss, ghost
        self.name = "ghost" if ghost else "hooks"
        self.layers = _trainable_layers(model)
        self.trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}

    def clipped_sum(self, batch: dict[str, torch.Tensor], max_grad_norm: float | None) -> ClippedSum:
        seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

        def keep(name):
            def hook(module, inputs, output):
                if name in seen:
                    raise ValueError(f"layer '{name}' ran twice in one forward; use the 'vmap' implementation")
                seen[name] = (inputs[0].detach(), output)
            return hook

        handles = [m.register_forward_hook(keep(name)) for name, m in self.layers]
        try:
            with torch.enable_grad():
                losses = self.batched_loss(self.model, batch)
        finally:
            for h in handles:
                h.remove()
        examples = losses.shape[0]
        names = [name for name, _ in self.layers if name in seen]
        outs = torch.autograd.grad(losses.sum(), [seen[n][1] for n in names], allow_unused=True)
        modules, rules = dict(self.layers), []
        for name, out_grad in zip(names, outs):
            module, (a, out) = modules[name], seen[name]
            g = torch.zeros_like(out) if out_grad is None else out_grad.detach()
            if a.shape[0] % examples or g.shape[0] != a.shape[0]:
                raise ValueError(f"layer '{name}' sees {a.shape[0]} rows for {examples} examples: rows must be "
                                 f"K per example, example-major")
            rules.append((name, _rule(module, a, g, examples, self.ghost)))
        norms_sq = sum(rule.squared_norms() for _, rule in rules)
        weights, norms, bad = example_weights(norms_sq, max_grad_norm)
        summed = {}
        bad_rows = bad if bad.any() else None  # one check per batch, not a masked copy of every layer's rows
        for name, rule in rules:
            for param, value in rule.weighted_sum(weights, bad_rows).items():
                summed[f"{name}.{param}" if name else param] = value
        for name, p in self.trainable.items():  # a layer the loss never reached has gradient 0
            summed.setdefault(name, torch.zeros_like(p))
        return ClippedSum(summed, norms, bad)


def _rule(module, a, g, examples, ghost):
    if ghost and type(module) is nn.Linear:
        return _LinearRule(module, a.reshape(examples, -1, a.shape[-1]), g.reshape(examples, -1, g.shape[-1]))
    if ghost and type(module) is nn.Conv2d and module.groups == 1 and not isinstance(module.padding, str):
        return _ConvRule(module, a, g, examples)
    return _MaterialisedRule(module, a, g, examples)


class _MaterialisedRule:
    """The per-example gradients themselves, by Opacus's grad sampler for the layer type, K rows summed."""

    def __init__(self, module, a, g, examples):
        samples = GRAD_SAMPLERS[type(module)](module, [a], g)
        by_param = {id(p): n for n, p in module.named_parameters(recurse=False)}
        self.grads = {by_param[id(p)]: s.reshape(examples, -1, *s.shape[1:]).sum(1) for p, s in samples.items()}

    def squared_norms(self):
        return sum(torch.linalg.vector_norm(s.flatten(1), dim=1).square() for s in self.grads.values())

    def weighted_sum(self, weights, bad):
        return {n: (weights @ zero_rows(s, bad).flatten(1)).view(s.shape[1:]) for n, s in self.grads.items()}


class _LinearRule:
    """A layer that is a matmul per position: out_t = W a_t (+ b), with a (B, T, p) and g (B, T, o), the T
    positions of an example's K rows together. Conv2d is one after unfolding."""

    def __init__(self, module, a, g):
        self.module, self.a, self.g = module, a, g
        t, p, o = a.shape[1], a.shape[2], g.shape[2]
        self.per_example = None
        if t * (p + o) >= p * o:  # ghost costs T^2 (p + o) per example, the per-example gradient T p o
            self.per_example = torch.einsum("bto,btp->bop", g, a)

    def squared_norms(self):
        w = self.module.weight
        total = 0
        if w.requires_grad:
            if self.per_example is not None:
                total = torch.linalg.vector_norm(self.per_example.flatten(1), dim=1).square()
            elif self.a.shape[1] == 1:
                total = self.a.square().sum((1, 2)) * self.g.square().sum((1, 2))
            else:  # the ghost norm: <a a^T, g g^T>, T x T per example
                total = (torch.bmm(self.a, self.a.transpose(1, 2)) * torch.bmm(self.g, self.g.transpose(1, 2))).sum((1, 2))
        bias = self.module.bias
        if bias is not None and bias.requires_grad:
            total = total + self.g.sum(1).square().sum(1)
        return total

    def weighted_sum(self, weights, bad):
        out = {}
        g = zero_rows(self.g, bad) * weights.view(-1, 1, 1)
        w = self.module.weight
        if w.requires_grad:
            if self.per_example is not None:
                out["weight"] = (weights @ zero_rows(self.per_example, bad).flatten(1)).view(w.shape)
            else:
                a = zero_rows(self.a, bad)
                out["weight"] = (g.reshape(-1, g.shape[-1]).T @ a.reshape(-1, a.shape[-1])).view(w.shape)
        if self.module.bias is not None and self.module.bias.requires_grad:
            out["bias"] = g.sum((0, 1))
        return out


class _ConvRule:
    """Conv2d, as a matmul per output position after unfolding: ghost norm when T (p + o) < p o, T = K x
    positions, p = in_channels x kernel, o = out_channels (small feature maps); otherwise the per-example
    weight gradients, computed as one convolution with the batch rows as groups (cheaper on CPU than Opacus's
    unfold and einsum). The clipped sum is one ordinary weight-gradient convolution of the weighted g."""

    def __init__(self, module, a, g, examples):
        self.module, self.a, self.g, self.examples = module, a, g, examples
        rows, w = a.shape[0], module.weight
        positions = (rows // examples) * g.shape[2] * g.shape[3]
        p, o = w[0].numel(), w.shape[0]
        self.ghost = positions * (p + o) < p * o
        self.per_example = None
        if not self.ghost and w.requires_grad:
            grads = _per_row_conv_weight_grads(module, a, g)
            self.per_example = grads.view(examples, rows // examples, *w.shape).sum(1)

    def squared_norms(self):
        total = 0
        if self.module.weight.requires_grad:
            if self.per_example is not None:
                total = torch.linalg.vector_norm(self.per_example.flatten(1), dim=1).square()
            else:
                m = self.module
                cols = self.a.flatten(2) if _pointwise(m) else F.unfold(self.a, m.kernel_size, m.dilation, m.padding,
                                                                         m.stride)  # (R, p, L)
                positions = cols.shape[2]
                cols = cols.reshape(self.examples, -1, cols.shape[1], positions).permute(0, 2, 1, 3).flatten(2)
                outs = self.g.reshape(self.examples, -1, self.g.shape[1], positions).permute(0, 2, 1, 3).flatten(2)
                total = (torch.bmm(cols.transpose(1, 2), cols) * torch.bmm(outs.transpose(1, 2), outs)).sum((1, 2))
        if self.module.bias is not None and self.module.bias.requires_grad:
            total = total + self._bias_per_example().square().sum(1)
        return total

    def _bias_per_example(self):
        return self.g.sum((2, 3)).reshape(self.examples, -1, self.g.shape[1]).sum(1)

    def weighted_sum(self, weights, bad):
        out, m = {}, self.module
        if m.weight.requires_grad:
            if self.per_example is not None:
                out["weight"] = (weights @ zero_rows(self.per_example, bad).flatten(1)).view(m.weight.shape)
            else:
                rows = weights.repeat_interleave(self.a.shape[0] // self.examples).view(-1, 1, 1, 1)
                a, g = zero_rows(self.a, bad), zero_rows(self.g, bad) * rows
                if _pointwise(m):  # a matmul per position: skip the convolution's call overhead
                    out["weight"] = torch.bmm(g.flatten(2), a.flatten(2).transpose(1, 2)).sum(0).view(m.weight.shape)
                else:
                    out["weight"] = torch.nn.grad.conv2d_weight(a, m.weight.shape, g, stride=m.stride,
                                                                padding=m.padding, dilation=m.dilation)
        if m.bias is not None and m.bias.requires_grad:
            out["bias"] = weights @ zero_rows(self._bias_per_example(), bad)
        return out


# Below this many output channels, oneDNN's grouped weight-gradient convolution takes a slow path on CPU (a rank-4
# LoDA A conv 32 -> 4 at 28x28, batch 64: 9.4 ms, where 32 -> 8 takes about 2), and one bmm against g placed at
# each kernel offset takes 2.6 ms; from 8 channels on, the grouped convolution wins (benchmarks/RESULTS.md,
# "Per-example conv weight gradients").
SHIFTED_BELOW_CHANNELS = 8


def _pointwise(module: nn.Conv2d) -> bool:
    """A 1x1, stride-1, unpadded conv: a matmul per position, so its input rows are their own unfolding."""
    return module.kernel_size == (1, 1) and module.stride == (1, 1) and module.padding == (0, 0)


def _pointwise_output_grads(module: nn.Conv2d, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Per-row weight gradients of a pointwise conv: one matmul per row."""
    return torch.bmm(g.flatten(2), a.flatten(2).transpose(1, 2)).view(a.shape[0], *module.weight.shape)


def _grouped_output_grads(module: nn.Conv2d, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Per-row weight gradients as one weight-gradient convolution with the rows as groups."""
    w, rows = module.weight, a.shape[0]
    return torch.nn.grad.conv2d_weight(
        a.reshape(1, -1, *a.shape[2:]), (rows * w.shape[0], *w.shape[1:]), g.reshape(1, -1, *g.shape[2:]),
        stride=module.stride, padding=module.padding, dilation=module.dilation, groups=rows).view(rows, *w.shape)


def per_row_conv_way(module: nn.Conv2d) -> str:
    """Which of PER_ROW_CONV_WAYS builds this conv's per-row weight gradients."""
    if _pointwise(module):
        return "bmm"
    if module.weight.shape[0] < SHIFTED_BELOW_CHANNELS and module.stride == (1, 1):  # at stride 2 the two are even
        return "shifted"
    return "grouped"


def _per_row_conv_weight_grads(module: nn.Conv2d, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Each row's weight gradient of a Conv2d, (rows, *weight.shape), from its input rows a and output gradient
    rows g."""
    return PER_ROW_CONV_WAYS[per_row_conv_way(module)](module, a, g)


def _shifted_output_grads(module: nn.Conv2d, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Per-row weight gradients as one bmm: grad[o, c, i, j] = sum over positions of g[o, y, x] times the padded
    input at (s y + d i, s x + d j), so g is placed at each kernel offset (i, j) of a zero frame the size of the
    padded input, and all k*k placements meet the padded input in one matmul per row."""
    w, rows = module.weight, a.shape[0]
    out_ch, in_ch, kh, kw = w.shape
    (sh, sw), (dh, dw), (ph, pw) = module.stride, module.dilation, module.padding
    padded = F.pad(a, (pw, pw, ph, ph))
    height, width = padded.shape[2:]
    out_h, out_w = g.shape[2:]
    placed = g.new_zeros(rows, out_ch, kh, kw, height, width)
    for i in range(kh):
        for j in range(kw):
            placed[:, :, i, j, dh * i:dh * i + sh * (out_h - 1) + 1:sh, dw * j:dw * j + sw * (out_w - 1) + 1:sw] = g
    grads = torch.bmm(placed.view(rows, out_ch * kh * kw, height * width),
                      padded.reshape(rows, in_ch, height * width).transpose(1, 2))
    return grads.view(rows, out_ch, kh, kw, in_ch).permute(0, 1, 4, 2, 3)


PER_ROW_CONV_WAYS = {"bmm": _pointwise_output_grads, "shifted": _shifted_output_grads,
                     "grouped": _grouped_output_grads}
