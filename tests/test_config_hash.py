"""The config hash covers the whole normalised config, with no special cases: every setting at every value,
nested scope settings, the noise source and the backbone's recipe."""
import dataclasses

import pytest

import dpbench.builtins.backbones as backbones
from dpbench.api.registry import load_registry
from dpbench.run.config import CONFIG_VERSION, run_location
from dpbench.run.request import RunRequest
from dpbench.run.resolve import resolve


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def _location(registry, method="dp-loda", **changes):
    request = dataclasses.replace(RunRequest(method=method, pair="digits-mnist", epsilon=10.0, preset="smoke"),
                                  **changes)
    config, config_hash, _ = run_location(request, resolve(registry, request), "digest")
    return config, config_hash


def test_every_setting_is_hashed_at_every_value(registry):
    config, base = _location(registry)
    assert config["config_version"] == CONFIG_VERSION == 2
    settings = config["settings"]
    assert {"physical_batch_size", "min_timestep", "scope", "scope_settings"} <= set(settings)
    assert settings["scope_settings"] == {"rank": 4, "slope": 0.1}
    changed = {_location(registry, overrides={key: value})[1] for key, value in
               [("physical_batch_size", "64"), ("physical_batch_size", "8"), ("min_timestep", "1"),
                ("scope.rank", "8"), ("scope.slope", "0.2"), ("noise_multiplicity", "4")]}
    # the preset's own physical_batch_size (64) restated is the same config; every other value is another one
    assert base in changed and len(changed) == 6


def test_the_noise_source_audit_and_backbone_recipe_are_always_in_the_config(registry, monkeypatch):
    seeded, seeded_hash = _location(registry)
    assert seeded["rng"] == "seeded" and seeded["audit"] is None
    assert _location(registry, rng="secure")[1] != seeded_hash
    assert seeded["backbone_recipe"] == {"pixel": backbones.PixelBackbone.recipe_version}
    latent, latent_hash = _location(registry, method="dp-lora")
    assert latent["backbone_recipe"] == {"latent": backbones.LATENT_RECIPE_VERSION}
    monkeypatch.setattr(backbones.PixelBackbone, "recipe_version", backbones.PixelBackbone.recipe_version + 1)
    monkeypatch.setattr(backbones.LatentBackbone, "recipe_version", backbones.LATENT_RECIPE_VERSION + 1)
    assert _location(registry)[1] != seeded_hash and _location(registry, method="dp-lora")[1] != latent_hash


def test_the_run_module_has_no_hash_special_cases():
    from pathlib import Path

    import dpbench.run

    text = "\n".join(p.read_text() for p in Path(dpbench.run.__file__).parent.glob("*.py"))
    assert "LATE_SETTINGS" not in text and "earlier hashes" not in text
