"""Every per-example gradient implementation (privacy.per_example) against torch.func's: the same clipped sum on
the same batch, each example's contribution <= C with K draws averaged before clipping, a non-finite example
bounded and counted; and wrong variants (K rows clipped apart, a non-finite row left in) are caught."""
import math

import pytest
import torch
from torch import nn

from dpbench.builtins.scopes import AttentionScope, FullScope, LoDAScope, LoRAScope
from dpbench.finetune.classifier import classifier_example_loss
from dpbench.finetune.diffusion_finetune import diffusion_batch_maker, diffusion_example_loss
from dpbench.models.classifiers import build_classifier
from dpbench.models.diffusion import DiffusionSchedule
from dpbench.models.unet import ClassConditionalUNet, UNetConfig
from dpbench.privacy import per_example
from dpbench.privacy.engine import DPSettings, PrivateTrainer
from dpbench.privacy.per_example import base, choice
from dpbench.privacy.per_example.layers import LayerwiseGradients

torch.set_num_threads(2)
IMPLEMENTATIONS = per_example.IMPLEMENTATIONS
SCOPES = {s.name: s for s in (FullScope(), AttentionScope(), LoRAScope(), LoDAScope())}
LOSS = diffusion_example_loss(DiffusionSchedule())


def _unet(scope: str = "full") -> nn.Module:
    torch.manual_seed(0)
    model = ClassConditionalUNet(UNetConfig.for_images(8, 1, 3, base_channels=8, groups=4))
    chosen = SCOPES[scope]
    chosen.apply(model, chosen.Settings() if chosen.Settings is not None else None)
    for p in model.parameters():  # adapters' B starts at zero: move every weight off its initial point
        if p.requires_grad:
            p.data.add_(0.05 * torch.randn_like(p))
    return model


def _batch(n: int, k: int, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=gen) * 2 - 1
    return diffusion_batch_maker(DiffusionSchedule(), k, 0.25, 3)({"x": x, "y": torch.arange(n) % 3}, gen)


def _close(result, reference, rel=1e-4):
    scale = max(ref.abs().max().item() for ref in reference.summed.values())  # some are 0 but for rounding
    for name, ref in reference.summed.items():
        assert (result.summed[name] - ref).abs().max().item() <= rel * scale, name
    assert torch.allclose(result.norms, reference.norms, rtol=1e-4, atol=1e-7)
    assert torch.equal(result.nonfinite, reference.nonfinite)


def _norm(summed: dict[str, torch.Tensor]) -> float:
    return torch.cat([g.flatten() for g in summed.values()]).norm().item()


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("scope", list(SCOPES))
@pytest.mark.parametrize("k", [1, 3])
def test_the_clipped_sum_equals_torch_funcs(implementation, scope, k):
    model, batch = _unet(scope), _batch(5, k)
    reference = per_example.build("vmap", model, LOSS).clipped_sum(batch, None)
    clip = 0.5 * reference.norms.median().item()  # some examples clipped, some not
    for max_grad_norm in (None, clip):
        expected = per_example.build("vmap", model, LOSS).clipped_sum(batch, max_grad_norm)
        _close(per_example.build(implementation, model, LOSS).clipped_sum(batch, max_grad_norm), expected)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_the_classifiers_clipped_sum_equals_torch_funcs(implementation):
    torch.manual_seed(0)
    model = build_classifier("cnn", 1, 28, 10)
    batch = {"x": torch.randn(6, 1, 28, 28), "y": torch.arange(6)}
    expected = per_example.build("vmap", model, classifier_example_loss).clipped_sum(batch, 0.5)
    _close(per_example.build(implementation, model, classifier_example_loss).clipped_sum(batch, 0.5), expected)


def _contribution(impl, n: int, k: int, clip: float) -> float:
    """What example n adds to the clipped sum of examples 0..n-1: the sensitivity on neighbouring batches."""
    batch = _batch(n + 1, k)
    without = impl.clipped_sum({name: v[:n] for name, v in batch.items()}, clip).summed
    with_extra = impl.clipped_sum(batch, clip).summed
    return _norm({name: with_extra[name] - without[name] for name in without})


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("k", [1, 4])
def test_one_example_contributes_at_most_c_with_k_draws_averaged_first(implementation, k):
    clip = 1e-3  # far below every per-draw norm: clipping always active
    for scope in SCOPES:
        impl = per_example.build(implementation, _unet(scope), LOSS)
        contribution = _contribution(impl, 4, k, clip)
        assert 0.99 * clip <= contribution <= clip * (1 + 1e-3), scope


def _rows_as_examples(batched):
    """The tempting wrong variant's loss: each of an example's K draws an example of its own, clipped apart."""
    def loss(model, batch):
        b, k = batch["t"].shape
        rows = {"x0": batch["x0"].repeat_interleave(k, 0), "t": batch["t"].reshape(-1, 1),
                "noise": batch["noise"].reshape(b * k, 1, *batch["noise"].shape[2:]), "y": batch["y"].reshape(-1, 1)}
        return batched(model, rows) / k  # the same total loss as the mean over K

    return loss


def test_a_variant_clipping_each_of_the_k_rows_apart_fails_the_bound():
    k, clip = 4, 1e-3
    wrong = LayerwiseGradients(_unet("loda"), _rows_as_examples(LOSS.batched_form), ghost=True)
    # each row's gradient is 1/K of a draw's, still far above C: each row is clipped to C, K of them per example
    assert _contribution(wrong, 4, k, clip) > 1.5 * clip


NONFINITE = [math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("value", NONFINITE)
@pytest.mark.parametrize("k", [1, 3])
def test_a_nonfinite_example_contributes_nothing_and_is_marked(implementation, value, k):
    impl = per_example.build(implementation, _unet("full"), LOSS)
    batch = _batch(5, k)
    batch["x0"][2, 0, 3, 3] = value
    clip = 1e-2
    result = impl.clipped_sum(batch, clip)
    assert result.nonfinite.tolist() == [False, False, True, False, False]
    assert result.norms[2].item() == 0.0
    assert all(torch.isfinite(g).all() for g in result.summed.values())
    assert _norm(result.summed) <= 4 * clip * (1 + 1e-4)
    kept = [0, 1, 3, 4]
    expected = impl.clipped_sum({name: v[kept] for name, v in batch.items()}, clip)
    for name in expected.summed:
        assert torch.allclose(result.summed[name], expected.summed[name], rtol=1e-4, atol=1e-9)
    plain = impl.clipped_sum(batch, None)  # not private: the plain sum, still without the bad example
    assert plain.nonfinite[2] and all(torch.isfinite(g).all() for g in plain.summed.values())


@pytest.mark.parametrize("implementation", ["hooks", "ghost"])
def test_a_variant_leaving_the_nonfinite_rows_in_is_caught(implementation, monkeypatch):
    """Weight 0 alone is not enough: 0 * inf = NaN. Without zeroing the bad rows the sum is poisoned."""
    monkeypatch.setattr("dpbench.privacy.per_example.layers.zero_rows", lambda t, bad: t)
    batch = _batch(5, 1)
    batch["x0"][2, 0, 3, 3] = math.inf
    result = per_example.build(implementation, _unet("full"), LOSS).clipped_sum(batch, 1e-2)
    assert not all(torch.isfinite(g).all() for g in result.summed.values())


def test_an_overflowing_norm_is_never_scaled_by_a_wrong_factor():
    grads = {"w": torch.full((3, 4), 1e30), "b": torch.ones(3, 2)}
    grads["w"][1] = 0.1
    result = base.clip_and_sum(grads, 1.0)
    assert result.nonfinite.tolist() == [True, False, True]  # squares overflow float32: contribute nothing
    assert _norm(result.summed) <= 1.0 + 1e-5


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_the_engine_uses_and_records_the_implementation(implementation):
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    y = torch.arange(6) % 3
    settings = DPSettings(expected_batch_size=6, steps=1, max_grad_norm=1.0, per_example=implementation)
    trainer = PrivateTrainer(_unet("lora"), LOSS, diffusion_batch_maker(DiffusionSchedule(), 2, 0.1, 3), settings,
                             private_x=x, private_y=y, epsilon=10.0, delta=1e-5, device=torch.device("cpu"), seed=0)
    assert trainer.plan.per_example == trainer.per_example.name == implementation
    gradient = trainer._privatised_gradient()
    assert all(torch.isfinite(g).all() for g in gradient.values())


def test_auto_picks_ghost_where_supported_and_falls_back_to_vmap():
    for scope in SCOPES:
        assert choice.resolve_implementation("auto", _unet(scope), LOSS) == "ghost"
        assert choice.resolve_implementation(SCOPES[scope].per_example, _unet(scope), LOSS) == "ghost"
    classifier = build_classifier("cnn", 1, 28, 10)
    assert choice.resolve_implementation("auto", classifier, classifier_example_loss) == "ghost"
    no_batched_form = lambda model_fn, example: model_fn(example["x"]).sum()  # noqa: E731
    assert choice.resolve_implementation("auto", classifier, no_batched_form) == "vmap"
    with pytest.raises(ValueError, match="batched form"):
        choice.resolve_implementation("ghost", classifier, no_batched_form)
    with pytest.raises(ValueError, match="per_example"):
        DPSettings(expected_batch_size=6, steps=1, max_grad_norm=1.0, per_example="opacus")
    # batch norm mixes the batch's examples: a row is no longer one example's alone, so only torch.func's will do
    mixing = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(10))
    mixing(torch.zeros(2, 1, 28, 28))
    assert choice.resolve_implementation("auto", mixing, classifier_example_loss) == "vmap"
    for name in ("hooks", "ghost"):
        with pytest.raises(ValueError, match="cannot handle"):
            choice.resolve_implementation(name, mixing, classifier_example_loss)


@pytest.mark.parametrize("geometry", [
    dict(kernel_size=3, padding=1), dict(kernel_size=3, padding=1, stride=2), dict(kernel_size=3, padding=2, dilation=2),
    dict(kernel_size=(3, 1), padding=(1, 0)), dict(kernel_size=1), dict(kernel_size=1, stride=2),
    dict(kernel_size=4, padding=0, stride=2)])
@pytest.mark.parametrize("out_channels", [3, 8])  # the shifted-placement path below 8 channels, grouped conv from 8
def test_per_row_conv_weight_gradients_equal_autograds_for_every_geometry(geometry, out_channels):
    from dpbench.privacy.per_example.layers import _per_row_conv_weight_grads

    torch.manual_seed(0)
    conv = nn.Conv2d(5, out_channels, bias=False, **geometry)
    a = torch.randn(4, 5, 9, 9)
    g = torch.randn_like(conv(a))
    expected = torch.stack([torch.autograd.grad((conv(a[r:r + 1]) * g[r:r + 1]).sum(), conv.weight)[0]
                            for r in range(4)])
    assert torch.allclose(_per_row_conv_weight_grads(conv, a, g), expected, atol=1e-4)


@pytest.mark.parametrize("geometry", [dict(kernel_size=1), dict(kernel_size=3, padding=1)])
@pytest.mark.parametrize("k", [1, 2])
def test_the_ghost_conv_rule_gives_the_per_example_norms_and_clipped_sum(geometry, k):
    """Small feature maps and wide channels take the ghost norm (never materialised per-example gradients); its
    norms and weighted sum must equal those of the explicit per-example gradients, K rows summed first."""
    from dpbench.privacy.per_example.layers import _ConvRule

    torch.manual_seed(0)
    conv = nn.Conv2d(32, 32, bias=True, **geometry)
    examples = 3
    a = torch.randn(examples * k, 32, 2, 2)
    g = torch.randn_like(conv(a))
    rule = _ConvRule(conv, a, g, examples)
    assert rule.ghost and rule.per_example is None
    per_row = [torch.autograd.grad((conv(a[r:r + 1]) * g[r:r + 1]).sum(), (conv.weight, conv.bias))
               for r in range(examples * k)]
    weight = torch.stack([w for w, _ in per_row]).view(examples, k, *conv.weight.shape).sum(1)
    bias = torch.stack([b for _, b in per_row]).view(examples, k, -1).sum(1)
    expected_sq = weight.flatten(1).square().sum(1) + bias.square().sum(1)
    assert torch.allclose(rule.squared_norms(), expected_sq, rtol=1e-4)
    weights = torch.tensor([0.5, 1.0, 0.25])
    summed = rule.weighted_sum(weights, None)
    assert torch.allclose(summed["weight"], torch.einsum("b,b...->...", weights, weight), atol=1e-4)
    assert torch.allclose(summed["bias"], weights @ bias, atol=1e-4)
