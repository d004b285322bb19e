"""Sampling runs a copy of the fine-tuned model with LoRA merged and LoDA's base and A convs stacked; it must
compute what the trained model computes, and leave the trained model as it was."""
from __future__ import annotations

import torch
from torch import nn

from dpbench.models.loda import FusedLoDAConv2d, LoDAConv2d, add_loda_adapters
from dpbench.models.lora import LoRAConv1x1, LoRALinear, add_lora_adapters
from dpbench.models.sampling_form import for_sampling
from dpbench.models.unet import ClassConditionalUNet, UNetConfig

torch.set_num_threads(2)


def _trained_like(model: nn.Module, seed: int = 1) -> nn.Module:
    """Give the adapters non-zero weights (B starts at zero, which would hide a wrong merge)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.copy_(0.3 * torch.randn(param.shape, generator=generator))
    return model


def _unet() -> ClassConditionalUNet:
    torch.manual_seed(0)
    return ClassConditionalUNet(UNetConfig.for_images(28, 1, 3, base_channels=8, groups=4))


def _inputs():
    return torch.randn(3, 1, 28, 28), torch.tensor([5, 500, 900]), torch.tensor([0, 1, 3])


def test_lora_merges_into_plain_layers_with_the_same_outputs():
    model = _unet()
    add_lora_adapters(model, rank=4, alpha=8.0)  # scale 2: a merge that forgot the scale would be off
    _trained_like(model)
    x, t, y = _inputs()
    expected = model(x, t, y)
    sampled = for_sampling(model)
    assert not any(isinstance(m, (LoRALinear, LoRAConv1x1)) for m in sampled.modules())
    assert sum(p.numel() for p in sampled.parameters()) == sum(p.numel() for p in _unet().parameters())
    torch.testing.assert_close(sampled(x, t, y), expected, atol=1e-4, rtol=1e-4)
    assert any(isinstance(m, LoRALinear) for m in model.modules())  # the trained model is left as it was


def test_loda_fuses_base_and_a_with_the_same_outputs():
    model = _unet()
    add_loda_adapters(model, rank=4, slope=0.1)
    _trained_like(model)
    x, t, y = _inputs()
    expected = model(x, t, y)
    sampled = for_sampling(model)
    assert not any(isinstance(m, LoDAConv2d) for m in sampled.modules())
    assert any(isinstance(m, FusedLoDAConv2d) for m in sampled.modules())
    torch.testing.assert_close(sampled(x, t, y), expected, atol=1e-4, rtol=1e-4)
    assert not any(p.requires_grad for p in sampled.parameters())
    assert any(p.requires_grad for p in model.parameters())


def test_fused_loda_keeps_strides_bias_and_the_nonlinearity():
    base = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=True)
    adapter = _trained_like(LoDAConv2d(base, rank=2, slope=0.1))
    x = torch.randn(2, 4, 7, 7)
    fused = adapter.for_sampling()
    torch.testing.assert_close(fused(x), adapter(x), atol=1e-5, rtol=1e-5)
    linearised = adapter.base(x) + adapter.loda_b(adapter.loda_a(x))  # what a merge would compute
    assert not torch.allclose(fused(x), linearised, atol=1e-3)


def test_a_model_without_adapters_is_copied_unchanged():
    model = _unet()
    sampled = for_sampling(model)
    x, t, y = _inputs()
    torch.testing.assert_close(sampled(x, t, y), model(x, t, y))
    assert sampled is not model
