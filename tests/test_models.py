"""Fast tests of the core models: U-Net, LoDA adapters, diffusion/DDIM, classifiers, pre-train cache."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from dpbench.data.types import ImageSet
from dpbench.models.classifiers import ResNet9, SmallCNN, accuracy, build_classifier, fit_classifier
from dpbench.models.diffusion import (
    DiffusionSchedule,
    ddim_sample,
    diffusion_loss,
    drop_labels,
    to_model_range,
    to_uint8,
)
from dpbench.models.loda import LoDAConv2d, add_loda_adapters, loda_parameter_count, trainable_parameter_names
from dpbench.models.unet import ClassConditionalUNet, UNetConfig
from dpbench.pretrain import pixel_pretraining as pretrain_mod
from dpbench.pretrain.pixel_pretraining import PretrainConfig, pretrain_cache_path, pretrained_unet
from dpbench.storage import tensor_digest

torch.set_num_threads(2)


def tiny_config(size: int = 28, channels: int = 1, num_classes: int = 3) -> UNetConfig:
    return UNetConfig.for_images(size, channels, num_classes, base_channels=8, groups=4)


def tiny_unet(size: int = 28, channels: int = 1, seed: int = 0) -> ClassConditionalUNet:
    torch.manual_seed(seed)
    return ClassConditionalUNet(tiny_config(size, channels))


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3), (64, 3)])
def test_unet_output_shape(size: int, channels: int) -> None:
    model = tiny_unet(size, channels)
    x = torch.randn(2, channels, size, size)
    out = model(x, torch.tensor([0, 999]), torch.tensor([1, model.null_class]))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_unet_config_key_is_stable_and_distinct() -> None:
    a, b = tiny_config(), tiny_config()
    assert a.key() == b.key()
    assert a.key() != tiny_config(size=32).key()
    assert UNetConfig(28, 1, 10, attention_resolutions=[7]) == UNetConfig(28, 1, 10, attention_resolutions=(7,))
    assert UNetConfig.for_images(28, 1, 10).attention_resolutions == (7,)
    assert UNetConfig.for_images(32, 3, 10).attention_resolutions == (8,)


def test_unet_has_attention_convs() -> None:
    model = tiny_unet()
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert {"q", "k", "v", "proj_out"} <= names
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


# --- LoDA -------------------------------------------------------------------------------------------------

def test_loda_identity_at_init_and_frozen_base() -> None:
    model = tiny_unet()
    convs = {n: m for n, m in model.named_modules() if type(m) is nn.Conv2d}
    x, t, y = torch.randn(3, 1, 28, 28), torch.tensor([5, 500, 900]), torch.tensor([0, 1, 3])
    before = model(x, t, y)
    total_before = sum(p.numel() for p in model.parameters())

    n_trainable = add_loda_adapters(model, rank=4, slope=0.1)

    assert torch.allclose(model(x, t, y), before, atol=1e-6)
    for name in convs:  # every conv, attention q/k/v/proj_out included, is wrapped
        assert isinstance(model.get_submodule(name), LoDAConv2d), name
    assert any(n.endswith(".q") for n in convs) and any(n.endswith(".proj_out") for n in convs)
    assert n_trainable == sum(loda_parameter_count(c, 4) for c in convs.values())
    names = trainable_parameter_names(model)
    assert names and all(".loda_a." in n or ".loda_b." in n for n in names)
    assert sum(p.numel() for p in model.parameters() if not p.requires_grad) == total_before


def test_loda_conv_keeps_geometry() -> None:
    base = nn.Conv2d(4, 6, 3, stride=2, padding=1)
    wrapped = LoDAConv2d(base, rank=2, slope=0.1)
    x = torch.randn(1, 4, 7, 7)
    assert wrapped(x).shape == base(x).shape == (1, 6, 4, 4)
    assert wrapped.loda_a.stride == (2, 2) and wrapped.loda_a.bias is None
    assert wrapped.loda_b.kernel_size == (1, 1) and torch.count_nonzero(wrapped.loda_b.weight) == 0


def test_per_example_grads_via_torch_func_match_loop() -> None:
    model = tiny_unet()
    add_loda_adapters(model)
    with torch.no_grad():  # move B off zero so every adapter gradient is non-trivial
        for name, p in model.named_parameters():
            if ".loda_b." in name:
                p.normal_(0, 0.02)
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    schedule = DiffusionSchedule()
    g = torch.Generator().manual_seed(0)
    b = 3
    x0 = torch.rand(b, 1, 28, 28, generator=g) * 2 - 1
    t = torch.randint(0, 1000, (b,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    y = torch.tensor([0, 2, model.null_class])

    def loss_one(p, x0_i, t_i, n_i, y_i):
        fn = lambda x, tt, yy: functional_call(model, p, (x, tt, yy))  # noqa: E731
        return diffusion_loss(fn, x0_i[None], t_i[None], n_i[None], y_i[None], schedule)[0]

    per_ex = vmap(grad(loss_one), in_dims=(None, 0, 0, 0, 0))(params, x0, t, noise, y)

    for i in range(b):
        model.zero_grad()
        diffusion_loss(model, x0[i:i + 1], t[i:i + 1], noise[i:i + 1], y[i:i + 1], schedule).sum().backward()
        for name, p in model.named_parameters():
            if p.requires_grad:
                torch.testing.assert_close(per_ex[name][i], p.grad, rtol=1e-4, atol=1e-6)


# --- diffusion --------------------------------------------------------------------------------------------

def test_schedule_and_ranges() -> None:
    s = DiffusionSchedule()
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    assert 0 < s.alphas_cumprod[-1].item() < 1e-4
    img = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    x = to_model_range(img)
    assert x.min() == -1 and x.max() == 1
    assert torch.equal(to_uint8(x), img)
    assert torch.equal(x, img.float() / 127.5 - 1.0)  # bit for bit what it computed before it worked in place
    assert torch.equal(img, torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16))  # its input is untouched
    floats = torch.linspace(0, 255, 7)
    to_model_range(floats)
    assert torch.equal(floats, torch.linspace(0, 255, 7))  # a float input too (.float() would have aliased it)


def test_diffusion_loss_is_per_example() -> None:
    model = tiny_unet()
    x0 = torch.rand(4, 1, 28, 28) * 2 - 1
    loss = diffusion_loss(model, x0, torch.tensor([1, 10, 100, 999]), torch.randn_like(x0), torch.tensor([0, 1, 2, 3]))
    assert loss.shape == (4,) and (loss > 0).all()


def test_drop_labels() -> None:
    y = torch.zeros(10_000, dtype=torch.long)
    out = drop_labels(y, 0.1, 7, torch.Generator().manual_seed(0))
    assert set(out.unique().tolist()) == {0, 7}
    assert 0.08 < (out == 7).float().mean().item() < 0.12
    again = drop_labels(y, 0.1, 7, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_ddim_sample_shape_dtype_determinism() -> None:
    model = tiny_unet()
    labels = torch.tensor([0, 1, 2, 0, 1])
    kw = dict(shape=(1, 28, 28), schedule=DiffusionSchedule(), steps=4, guidance_scale=2.0, batch_size=2)
    a = ddim_sample(model, labels, generator=torch.Generator().manual_seed(1), **kw)
    b = ddim_sample(model, labels, generator=torch.Generator().manual_seed(1), **kw)
    c = ddim_sample(model, labels, generator=torch.Generator().manual_seed(2), **kw)
    assert a.dtype == torch.uint8 and a.shape == (5, 1, 28, 28)
    assert torch.equal(a, b) and not torch.equal(a, c)
    seen = []
    ddim_sample(model, labels, eta=1.0, progress_callback=seen.append, **kw)
    assert sum(seen) == 5
    assert model.training  # the caller's mode is restored


def test_ddim_recovers_the_image_under_an_oracle_denoiser() -> None:
    """With the exact eps of a one-image data set, DDIM (eta 0 or 1) must land on that image."""
    schedule = DiffusionSchedule()
    abar = schedule.alphas_cumprod.float()
    target = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1

    class Oracle(nn.Module):
        null_class = 1

        def __init__(self) -> None:
            super().__init__()
            self.unused = nn.Parameter(torch.zeros(1))

        def forward(self, x, t, y):
            a = abar[t].view(-1, 1, 1, 1)
            return (x - a.sqrt() * target) / (1 - a).sqrt()

    for eta in (0.0, 1.0):
        out = ddim_sample(Oracle(), torch.zeros(3, dtype=torch.long), (1, 8, 8), schedule, steps=20, eta=eta,
                          generator=torch.Generator().manual_seed(0))
        assert (out.int() - to_uint8(target).int()).abs().max() <= 1


# --- pre-training cache -----------------------------------------------------------------------------------

def _toy_public(n: int = 32) -> ImageSet:
    g = torch.Generator().manual_seed(0)
    return ImageSet(torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g), torch.arange(n) % 3)


def test_pretrain_cache_reused_and_keyed(tmp_path, monkeypatch) -> None:
    cfg, train = tiny_config(), PretrainConfig(steps=2, batch_size=8)
    calls = []
    real_train = pretrain_mod._train
    monkeypatch.setattr(pretrain_mod, "_train", lambda *a, **k: calls.append(1) or real_train(*a, **k))

    class Recorder:
        def __init__(self):
            self.advanced = 0

        def task(self, description, total):
            rec = self

            class T:
                def advance(self, n=1, **fields):
                    rec.advanced += n

                def close(self):
                    pass
            return T()

    rec = Recorder()
    kw = dict(pair_name="toy", seed=0, cache_dir=tmp_path, device="cpu")
    public = _toy_public()
    digest = tensor_digest(public.images, public.labels)  # the public data is part of the key
    first = pretrained_unet(public, cfg, train, progress=rec, **kw)
    assert calls == [1] and rec.advanced == 2
    assert pretrain_cache_path("toy", cfg, train, 0, tmp_path, public_digest=digest).exists()
    second = pretrained_unet(_toy_public(), cfg, train, progress=None, **kw)
    assert calls == [1]  # loaded, not trained
    for (n, p), (_, q) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(p, q), n
    assert not list((tmp_path / "pretrain").glob("*.tmp"))

    base = pretrain_cache_path("toy", cfg, train, 0, tmp_path, public_digest=digest)
    assert pretrain_cache_path("toy", cfg, train, 1, tmp_path, public_digest=digest) != base
    assert pretrain_cache_path("other", cfg, train, 0, tmp_path, public_digest=digest) != base
    assert pretrain_cache_path("toy", tiny_config(num_classes=4), train, 0, tmp_path, public_digest=digest) != base
    assert pretrain_cache_path("toy", cfg, PretrainConfig(steps=3, batch_size=8), 0, tmp_path,
                               public_digest=digest) != base
    assert pretrain_cache_path("toy", cfg, train, 0, tmp_path, public_digest="another public set") != base
    changed = _toy_public(n=33)  # other public data trains a new entry instead of loading this one
    pretrained_unet(changed, cfg, train, progress=None, **kw)
    assert calls == [1, 1]


def test_pretrain_refuses_anything_but_an_imageset(tmp_path) -> None:
    with pytest.raises(TypeError):
        pretrained_unet((_toy_public(),), tiny_config(), PretrainConfig(steps=1), pair_name="toy", seed=0,
                        cache_dir=tmp_path, device="cpu")


# --- classifiers ------------------------------------------------------------------------------------------

def _separable(n: int = 200, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: bright left half; class 1: bright right half; plus noise."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    imgs = torch.randint(0, 60, (n, 1, size, size), generator=g)
    left = labels == 0
    imgs[left, :, :, : size // 2] += 180
    imgs[~left, :, :, size // 2:] += 180
    return imgs.clamp(0, 255).to(torch.uint8), labels


def test_small_cnn_learns_separable_toy() -> None:
    imgs, labels = _separable()
    torch.manual_seed(0)
    model = build_classifier("cnn", 1, 16, 2)
    assert isinstance(model, SmallCNN)
    fit_classifier(model, imgs[:150], labels[:150], epochs=3, batch_size=32, lr=1e-3, device="cpu", seed=0)
    assert accuracy(model, imgs[150:], labels[150:], "cpu") >= 0.95


def test_resnet9_shapes_and_unknown_family() -> None:
    model = build_classifier("resnet9", 3, 32, 10)
    assert isinstance(model, ResNet9)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    with pytest.raises(ValueError):
        build_classifier("vit", 3, 32, 10)
