"""Shipped public backbones: the recipe beside the weights must match what the code would train now."""
import json

import pytest
import torch

import dpbench.builtins.backbones as backbones
from dpbench.api.context import MethodContext
from dpbench.api.registry import load_registry
from dpbench.pretrain.shipped import ShippedRecipeError, ShippedStore
from dpbench.pretrain.export import export_backbone
from dpbench.run.progress import SilentProgress
from dpbench.run.runner import RunRequest, execute

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.fixture(scope="module")
def data(registry):
    return registry.pair("digits-mnist").load(None)


def _ctx(registry, data, preset, tmp_path, rebuild=False):
    return MethodContext(pair=registry.pair("digits-mnist"), public=data.public_train, public_info=dict(data.info),
                         private=None, books=None, registry=registry, epsilon=0.0, delta=1e-5, seed=0,
                         device=torch.device("cpu"), preset=preset, progress=SilentProgress(), cache_dir=tmp_path,
                         rebuild_backbone=rebuild)


@pytest.fixture(scope="module")
def smoke_export(registry, tmp_path_factory):
    root = tmp_path_factory.mktemp("shipped")
    summary = export_backbone(registry, pair="digits-mnist", backbone="pixel", preset="smoke", output=root / "weights",
                              cache_dir=root / "cache", device="cpu", data_root=None, progress=SilentProgress())
    return root / "weights", summary


@pytest.mark.slow  # pre-trains the smoke pixel backbone
def test_export_writes_weights_with_their_recipe(smoke_export):
    weights, summary = smoke_export
    meta = json.loads((weights / "digits-mnist-pixel-smoke.json").read_text())
    assert meta["recipe"]["recipe_version"] == backbones.PIXEL_RECIPE_VERSION
    assert meta["recipe"]["public_digest"] and meta["train_seconds"] > 0
    assert meta["bytes"] == (weights / "digits-mnist-pixel-smoke.pt").stat().st_size < 8 * 2**20
    assert summary["seconds"] > 0


SHIPPED_PIXEL = "digits-mnist-pixel-default"  # the package's own weights: checked without pre-training anything


def test_a_changed_recipe_is_refused(registry, data, tmp_path):
    recipe = backbones.PixelBackbone().recipe(_ctx(registry, data, "default", tmp_path))
    store = ShippedStore(backbones.WEIGHTS_DIR)
    assert store.load(SHIPPED_PIXEL, recipe, "hint") is not None
    for changed in ({**recipe, "recipe_version": recipe["recipe_version"] + 1},
                    {**recipe, "train": {**recipe["train"], "steps": recipe["train"]["steps"] + 1}},
                    {**recipe, "public_digest": "0" * 16}):
        with pytest.raises(ShippedRecipeError, match="another recipe"):
            store.load(SHIPPED_PIXEL, changed, "hint")
    assert ShippedStore(backbones.WEIGHTS_DIR, rebuild=True).load(SHIPPED_PIXEL, recipe, "hint") is None


def test_tampered_weights_are_refused(registry, data, tmp_path):
    copy = tmp_path / "w"
    copy.mkdir()
    for name in (f"{SHIPPED_PIXEL}.pt", f"{SHIPPED_PIXEL}.json"):
        (copy / name).write_bytes((backbones.WEIGHTS_DIR / name).read_bytes())
    raw = bytearray((copy / f"{SHIPPED_PIXEL}.pt").read_bytes())
    raw[-100] ^= 0xFF
    (copy / f"{SHIPPED_PIXEL}.pt").write_bytes(bytes(raw))
    recipe = backbones.PixelBackbone().recipe(_ctx(registry, data, "default", tmp_path))
    assert ShippedStore(backbones.WEIGHTS_DIR).load(SHIPPED_PIXEL, recipe, "hint") is not None  # the untouched file
    with pytest.raises(ShippedRecipeError, match="sha256"):
        ShippedStore(copy).load(SHIPPED_PIXEL, recipe, "hint")


@pytest.mark.slow  # pre-trains the smoke pixel backbone, then a whole public-only run
def test_a_run_uses_shipped_weights_and_trains_nothing(registry, data, smoke_export, tmp_path, monkeypatch):
    weights, _ = smoke_export
    monkeypatch.setattr(backbones, "WEIGHTS_DIR", weights)
    request = RunRequest(method="public-only", pair="digits-mnist", epsilon=0, preset="smoke", out=tmp_path / "runs",
                         cache_dir=tmp_path / "cache", evaluators=[], device="cpu")
    outcome = execute(registry, request, SilentProgress(), data=data)
    assert outcome.ok, outcome.record.get("error")
    assert not (tmp_path / "cache" / "pretrain").exists()  # nothing was pre-trained locally


def test_every_shipped_backbone_matches_the_current_recipe(registry, data, tmp_path):
    """The weights in the package are exactly what `dpbench pretrain` would train now."""
    shipped = sorted(backbones.WEIGHTS_DIR.glob("*.json"))
    assert shipped, "the package ships no backbone"
    for meta_path in shipped:
        meta = json.loads(meta_path.read_text())
        preset = meta["recipe"]["preset"]
        ctx = _ctx(registry, data, preset, tmp_path)
        builder = backbones.LatentBackbone() if "-latent-" in meta_path.stem else backbones.PixelBackbone()
        recipe = builder.recipe(ctx)
        assert ShippedStore(backbones.WEIGHTS_DIR).load(meta_path.stem, recipe, "hint") is not None
        assert meta["bytes"] <= 8 * 2**20
    assert sum(p.stat().st_size for p in backbones.WEIGHTS_DIR.iterdir()) <= 15 * 2**20


@pytest.fixture(scope="module")
def latent_export(registry, tmp_path_factory):
    root = tmp_path_factory.mktemp("shipped-latent")
    summary = export_backbone(registry, pair="digits-mnist", backbone="latent", preset="smoke",
                              output=root / "weights", cache_dir=root / "cache", device="cpu", data_root=None,
                              progress=SilentProgress())
    return root / "weights", summary


@pytest.mark.slow  # pre-trains the smoke latent backbone, then a whole public-only run
def test_the_latent_backbone_ships_both_parts_with_one_recipe(registry, data, latent_export, tmp_path, monkeypatch):
    weights, summary = latent_export
    names = ("digits-mnist-latent-smoke-autoencoder", "digits-mnist-latent-smoke-unet")
    recipe = backbones.LatentBackbone().recipe(_ctx(registry, data, "smoke", tmp_path))
    assert recipe["recipe_version"] == backbones.LATENT_RECIPE_VERSION
    for name in names:
        meta = json.loads((weights / f"{name}.json").read_text())
        assert meta["recipe"] == recipe and meta["train_seconds"] > 0
        assert ShippedStore(weights).load(name, recipe, "hint") is not None
        with pytest.raises(ShippedRecipeError, match="another recipe"):
            ShippedStore(weights).load(name, {**recipe, "autoencoder": {**recipe["autoencoder"], "train": {}}}, "h")
    assert summary["train_seconds"] >= json.loads((weights / f"{names[0]}.json").read_text())["train_seconds"]
    monkeypatch.setattr(backbones, "WEIGHTS_DIR", weights)
    request = RunRequest(method="public-only", pair="digits-mnist", epsilon=0, preset="smoke", out=tmp_path / "runs",
                         cache_dir=tmp_path / "cache", evaluators=[], device="cpu", overrides={"backbone": "latent"})
    outcome = execute(registry, request, SilentProgress(), data=data)
    assert outcome.ok, outcome.record.get("error")
    assert not (tmp_path / "cache" / "pretrain").exists() and not (tmp_path / "cache" / "autoencoder").exists()


@pytest.mark.slow  # 100 DDIM samples at the default steps
def test_the_shipped_backbone_draws_no_noise_like_sample(registry, data, tmp_path):
    """Recognisable digits only: the 0.1 backbone with deterministic DDIM left 30% of its samples noise-like."""
    from tests.noise_check import noise_like_mask
    from dpbench.finetune.diffusion_finetune import DiffusionGenerator
    from dpbench.models.diffusion import DiffusionSchedule

    backbone = registry.backbone("pixel").build(_ctx(registry, data, "default", tmp_path))
    assert not (tmp_path / "pretrain").exists()  # it came from the package, not from local training
    defaults = registry.method("public-only").settings("default", registry.pair("digits-mnist"))
    generator = DiffusionGenerator(backbone.unet, DiffusionSchedule(), backbone.sample_shape,
                                   ddim_steps=defaults.ddim_steps, ddim_eta=defaults.ddim_eta,
                                   guidance_scale=defaults.guidance_scale, batch_size=100, device=torch.device("cpu"))
    samples = generator.sample(torch.arange(10).repeat_interleave(10), seed=0)
    assert samples.shape == (100, 1, 28, 28)
    assert noise_like_mask(samples).sum().item() == 0
