"""The DP engine's self-test: before the first private step, check what the sensitivity bound rests on.

One example's clipped contribution is <= C only if the method's code treats examples as the engine assumes:
`prepare` maps each example alone, `make_batch` gives one row per example and mixes none, the batched loss
(ghost, hooks) gives one loss per example and keeps rows example-major and independent, and the private forward
writes no buffer (a buffer is released with the model, unnoised). None of that is visible to the engine's
accounting, so it is checked here, on SYNTHETIC inputs of the private data's shape and dtype (never on private
data), and every decision depends only on them:

- a check that vmap makes moot (the batched form's rows, the ghost/hooks norms) falls back to vmap, which
  computes each example's gradient from that example alone; the fallback is recorded in the stage's
  `per_example` and warned about;
- any other failure refuses the engine with an EngineSelfTestError naming the method's function, the check and
  the fix.

The synthetic batch holds a few ordinary examples and one outlier, so a map or layer that mixes examples
(dataset- or batch-level statistics) shows on the others' rows.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from dpbench.privacy.per_example import batched_form
from dpbench.privacy.per_example import build as build_per_example

SYNTHETIC_EXAMPLES = 5  # four ordinary examples and one outlier: enough to see rows mix, one cheap pass
PREPARE_CHUNK = 2  # prepare runs on chunks this long too, and must agree with the whole batch
SELF_TEST_SEED = 20260523  # fixed: the synthetic inputs and the draws of the test are never data-dependent
RELATIVE_TOLERANCE = 1e-4  # float32 ghost/hooks vs vmap differ by < 1e-6 on every built-in layer geometry

_DISABLED_FOR_TESTS = False  # tests switch it on to measure what the careless plugins did before the self-test


class EngineSelfTestError(ValueError):
    """The method's code breaks an assumption the engine's sensitivity bound rests on, and no exact fallback exists."""

    def __init__(self, function, check: str, found: str, fix: str) -> None:
        self.check = check
        super().__init__(f"the DP engine's self-test refused {describe(function)}: {check} failed on a synthetic "
                         f"batch ({found}). Fix: {fix}")


class EngineSelfTestWarning(UserWarning):
    """The engine replaced the per-example implementation with vmap, because a check vmap makes moot failed."""


@dataclass(frozen=True)
class SelfTestReport:
    implementation: str  # the per-example implementation the engine will use
    fallback: str | None  # why the chosen one was replaced by vmap, or None
    checks: tuple[str, ...]  # what passed


def describe(function) -> str:
    """A method's function by module and name, so the error points at the plugin that wrote it."""
    module = getattr(function, "__module__", None) or "?"
    name = getattr(function, "__qualname__", None) or type(function).__qualname__
    return f"{module}.{name}"


def synthetic_images(image_shape: tuple[int, ...]) -> torch.Tensor:
    """uint8 images of the private split's shape: dim random examples and one all-white outlier (the last)."""
    generator = torch.Generator().manual_seed(SELF_TEST_SEED)
    images = torch.randint(0, 64, (SYNTHETIC_EXAMPLES, *image_shape), dtype=torch.uint8, generator=generator)
    images[-1] = 255
    return images


def synthetic_labels(num_classes: int | None) -> torch.Tensor:
    return torch.arange(SYNTHETIC_EXAMPLES, dtype=torch.int64) % (num_classes or 1)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape:
        return False
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return torch.equal(a.nan_to_num(), b.nan_to_num())
    scale = max(b.abs().max().item(), 1e-12) if b.numel() else 1.0
    return (a - b).abs().max().item() <= RELATIVE_TOLERANCE * scale if a.numel() else True


def check_prepare(prepare: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """prepare(x)[i:j] == prepare(x[i:j]): a per-example map. Returns prepare(images)."""
    whole = prepare(images)
    if not torch.is_tensor(whole) or whole.dim() == 0 or len(whole) != len(images):
        raise EngineSelfTestError(prepare, "one prepared row per example",
                                  f"{len(images)} images gave {type(whole).__name__} "
                                  f"{tuple(whole.shape) if torch.is_tensor(whole) else ''}",
                                  "return a tensor with one row per image")
    for start in range(0, len(images), PREPARE_CHUNK):
        part = prepare(images[start:start + PREPARE_CHUNK])
        if not torch.is_tensor(part) or not _close(part, whole[start:start + PREPARE_CHUNK]):
            raise EngineSelfTestError(prepare, "prepare(x[i:j]) == prepare(x)[i:j]",
                                      f"rows {start}..{start + PREPARE_CHUNK - 1} differ when prepared apart",
                                      "make prepare a fixed map of each image alone (no statistics over the split "
                                      "or the batch); compute any normalisation from public data")
    return whole


def _seeded(device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(SELF_TEST_SEED)


def check_make_batch(make_batch, examples: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """One row per example in every tensor, and no example's rows depend on another example."""
    n = len(examples["y"])
    batch = make_batch(examples, _seeded(device))
    if not isinstance(batch, dict) or not batch or not all(torch.is_tensor(v) for v in batch.values()):
        raise EngineSelfTestError(make_batch, "make_batch returns a dict of tensors", f"got {type(batch).__name__}",
                                  "return {name: tensor} with one row per example")
    wrong = {k: tuple(v.shape) for k, v in batch.items() if v.dim() == 0 or v.shape[0] != n}
    if wrong:
        raise EngineSelfTestError(make_batch, "one row per example (leading dim = examples drawn)",
                                  f"{n} examples gave {wrong}",
                                  "put an example's extra views or draws in a dimension after the first (b, K, ...) "
                                  "and average them inside the per-example loss")
    altered = {k: v.clone() for k, v in examples.items()}
    altered["x"][-1] = examples["x"][0]  # another outlier row: the other rows must not move
    again = make_batch(altered, _seeded(device))
    for key, value in batch.items():
        other = again.get(key) if isinstance(again, dict) else None
        if other is None or not _close(other[:-1], value[:-1]):
            raise EngineSelfTestError(make_batch, "examples are independent in make_batch",
                                      f"'{key}' of the other rows changed when one example changed",
                                      "build each example's rows from that example alone (no batch statistics)")
    return {k: v.to(device) for k, v in batch.items()}


def _batched_rows_problem(model: nn.Module, batched, batch: dict[str, torch.Tensor], n: int) -> str | None:
    """Why the batched form does not give one loss per example, equivariant to permuting the examples, or None."""
    with torch.no_grad():
        losses = batched(model, batch)
        if not torch.is_tensor(losses) or tuple(losses.shape) != (n,):
            return f"{n} examples gave losses of shape {tuple(getattr(losses, 'shape', ()))}, not ({n},)"
        order = torch.roll(torch.arange(n), 1)
        permuted = batched(model, {k: v[order.to(v.device)] for k, v in batch.items()})
    if not _close(permuted, losses[order.to(losses.device)]):
        return "permuting the examples did not permute their losses"
    return None


def _differs_from_vmap(layerwise, exact) -> str | None:
    """Why ghost/hooks's per-example norms or sum differ from vmap's on this batch, or None."""
    if not _close(layerwise.norms, exact.norms):
        return (f"per-example gradient norms differ from vmap's ({layerwise.norms.tolist()} vs "
                f"{exact.norms.tolist()}): the layers' rows are not example-major and independent")
    # one scale for every tensor: a parameter whose summed gradient is ~0 but for rounding has no scale of its own
    scale = max([g.detach().abs().max().item() for g in exact.summed.values() if g.numel()] + [1e-12])
    for name, reference in exact.summed.items():
        layer = layerwise.summed[name]
        if layer.shape != reference.shape or \
                (layer.detach().double() - reference.detach().double()).abs().max().item() > RELATIVE_TOLERANCE * scale:
            return f"the summed gradient of '{name}' differs from vmap's"
    return None


def exact_clipped_sum(model, loss, batch):
    try:
        return build_per_example("vmap", model, loss).clipped_sum(batch, None)
    except Exception as exc:
        raise EngineSelfTestError(loss, "per-example gradients by torch.func.vmap",
                                  f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                                  "make the per-example loss vmap-compatible (no .item(), no data-dependent "
                                  "control flow, no in-place update of a buffer)") from exc


def _refuse_changed_buffers(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    changed = [name for name, value in model.named_buffers() if name in before and not torch.equal(value, before[name])]
    if changed:
        raise EngineSelfTestError(model, "the private forward changes no buffer",
                                  f"buffers {changed[:5]} changed in one private step; they would be released "
                                  "with the model, unnoised",
                                  "use layers without running statistics (track_running_stats=False, GroupNorm), "
                                  "or freeze such a layer in eval mode")


def self_test(model: nn.Module, loss, make_batch, prepare, implementation: str, *, image_shape: tuple[int, ...],
              num_classes: int | None, device: torch.device) -> SelfTestReport:
    """Run every check; return the implementation to use (vmap where the chosen one failed a check vmap makes moot)
    and what passed. Leaves the model's parameters, buffers and every global random state as it found them."""
    if _DISABLED_FOR_TESTS:
        return SelfTestReport(implementation, None, ())
    devices = [device.index or 0] if device.type == "cuda" else []
    buffers = {name: value.detach().clone() for name, value in model.named_buffers()}
    # dropout masks each value alone (it mixes no rows), but random masks would make ghost and vmap differ
    dropouts = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.training]
    # TF32 (cuDNN's default for convolutions) rounds to ~1e-3: ghost and vmap are compared in full float32
    tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(SELF_TEST_SEED)
        try:
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
            for module in dropouts:
                module.eval()
            return _run_checks(model, loss, make_batch, prepare, implementation, image_shape, num_classes, device,
                               buffers)
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
            for module in dropouts:
                module.train()
            _restore(model, buffers)


def _run_checks(model, loss, make_batch, prepare, implementation, image_shape, num_classes, device, buffers):
    images = synthetic_images(image_shape)
    prepared = check_prepare(prepare, images) if prepare is not None else images
    examples = {"x": prepared.to(device), "y": synthetic_labels(num_classes).to(device)}
    batch = check_make_batch(make_batch, examples, device)
    checks = ["prepare per example", "make_batch one row per example, independent"]
    fallback = None
    if implementation != "vmap":
        layerwise = None
        try:
            fallback = _batched_rows_problem(model, batched_form(loss), batch, len(examples["y"]))
            if fallback is None:
                layerwise = build_per_example(implementation, model, loss).clipped_sum(batch, None)
        except Exception as exc:  # e.g. a layer run twice in one forward: vmap has no such assumption
            fallback = f"the batched form failed: {type(exc).__name__}: {exc}"
        _refuse_changed_buffers(model, buffers)
        _restore(model, buffers)
        if fallback is None:
            fallback = _differs_from_vmap(layerwise, exact_clipped_sum(model, loss, batch))
        if fallback is not None:
            warnings.warn(f"the DP engine uses vmap instead of '{implementation}' for {describe(loss)}: {fallback}",
                          EngineSelfTestWarning, stacklevel=4)
            implementation = "vmap"
        else:
            checks.append(f"{implementation} equals vmap")
    if implementation == "vmap":
        exact_clipped_sum(model, loss, batch)
    _refuse_changed_buffers(model, buffers)
    checks.append("no buffer written")
    return SelfTestReport(implementation, fallback, tuple(checks))
def _restore(model: nn.Module, buffers: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, value in model.named_buffers():
            if name in buffers:
                value.copy_(buffers[name])
