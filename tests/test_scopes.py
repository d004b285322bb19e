"""Trainable scopes, LoRA adapters and the latent autoencoder."""
import pytest
import torch

from dpbench.api.registry import UnknownNameError, load_registry
from dpbench.builtins.scopes import AttentionScope, FullScope, LoDAScope, LoRAScope, parse_parts
from dpbench.data.types import ImageSet
from dpbench.finetune.method import DiffusionSettings
from dpbench.models.autoencoder import AutoencoderConfig
from dpbench.models.lora import LoRAConv1x1, LoRALinear, lora_targets
from dpbench.models.unet import AttentionBlock, ClassConditionalUNet, UNetConfig
from dpbench.pretrain.autoencoder_pretraining import AutoencoderTraining, public_autoencoder

torch.set_num_threads(2)
SCOPES = {scope.name: scope for scope in (FullScope(), AttentionScope(), LoRAScope(), LoDAScope())}


def apply_scope(model, scope, **settings):
    """Apply a built-in scope with its own settings' defaults (overridden by `settings`); returns the
    trainable parameter count."""
    chosen = SCOPES[scope]
    own = chosen.Settings(**settings) if chosen.Settings is not None else None
    if own is not None:
        chosen.validate(own)
    chosen.apply(model, own)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _unet(seed=0):
    torch.manual_seed(seed)
    return ClassConditionalUNet(UNetConfig(7, 4, 3, base_channels=8, channel_mults=(1, 2), attention_resolutions=(7, 4),
                                           groups=4))


def _trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def _output(model):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 7, 7, generator=gen)
    return model(x, torch.tensor([5, 500]), torch.tensor([0, 2]))


def test_full_scope_trains_everything():
    model = _unet()
    assert apply_scope(model, "full") == sum(p.numel() for p in model.parameters())


def test_attention_scope_is_attention_blocks_and_class_embedder_only():
    model = _unet()
    count = apply_scope(model, "attention")
    names = _trainable(model)
    attention = {f"{m}.{p}" for m, mod in model.named_modules() if isinstance(mod, AttentionBlock)
                 for p, _ in mod.named_parameters()}
    assert names == attention | {"class_embed.weight"}
    assert count == sum(p.numel() for n, p in model.named_parameters() if n in names)
    assert {n.split(".")[0] for n in attention} == {"down", "mid", "up"}


def test_attention_blocks_option_restricts_to_the_named_parts():
    model = _unet()
    apply_scope(model, "attention", blocks="mid+up")
    parts = {n.split(".")[0] for n in _trainable(model)}
    assert parts == {"mid", "up", "class_embed"}
    with pytest.raises(ValueError, match="scope.blocks"):
        parse_parts("middle")


def test_lora_starts_as_the_base_model_and_trains_only_adapters():
    model = _unet()
    before = _output(model).detach()
    targets = lora_targets(model)
    assert any(".q" in t for t in targets) and any(t.endswith("emb") for t in targets)
    count = apply_scope(model, "lora", rank=2)
    assert torch.allclose(_output(model), before, atol=1e-6)
    names = _trainable(model)
    assert names and all(".lora_a." in n or ".lora_b." in n for n in names)
    wrapped = [m for m in model.modules() if isinstance(m, (LoRALinear, LoRAConv1x1))]
    assert len(wrapped) == len(targets)
    expected = sum(2 * (m.base.in_features + m.base.out_features) if isinstance(m, LoRALinear)
                   else 2 * (m.base.in_channels + m.base.out_channels) for m in wrapped)
    assert count == expected


def test_loda_scope_and_unknown_scope():
    model = _unet()
    assert apply_scope(model, "loda") == sum(p.numel() for n, p in model.named_parameters() if "loda_" in n)
    registry = load_registry()
    assert {name: type(scope) for name, scope in registry.scopes.items()} == {n: type(s) for n, s in SCOPES.items()}
    with pytest.raises(UnknownNameError, match="unknown scope 'everything'"):
        registry.scope("everything")
    with pytest.raises(UnknownNameError, match="unknown scope 'everything'"):  # refused before anything runs
        registry.method("dp-loda").validate(DiffusionSettings(scope="everything"), registry)


def test_scopes_read_their_knobs_from_the_settings():
    small, large = _unet(), _unet()
    assert apply_scope(small, "loda", rank=2) * 2 == apply_scope(large, "loda", rank=4)  # adapters are linear in r
    small, large = _unet(), _unet()
    assert apply_scope(small, "lora", rank=2) * 2 == apply_scope(large, "lora", rank=4)
    with pytest.raises(ValueError, match="scope.blocks"):
        apply_scope(_unet(), "attention", blocks="middle")


def test_autoencoder_latents_bounded_cached_and_public_only(tmp_path):
    gen = torch.Generator().manual_seed(0)
    public = ImageSet(torch.randint(0, 256, (40, 1, 28, 28), generator=gen, dtype=torch.uint8), torch.arange(40) % 4)
    config = AutoencoderConfig(28, 1, width=8)
    assert config.latent_size() == 7
    kw = dict(pair_name="toy", seed=0, cache_dir=tmp_path, device=torch.device("cpu"))
    codec = public_autoencoder(public, config, AutoencoderTraining(steps=3, batch_size=8), **kw)
    z = codec.encode(public.images[:5])
    assert z.shape == (5, 4, 7, 7) and z.abs().max() <= 1.0
    images = codec.decode(z)
    assert images.dtype == torch.uint8 and images.shape == (5, 1, 28, 28)
    again = public_autoencoder(public, config, AutoencoderTraining(steps=3, batch_size=8), **kw)
    assert again.cache_key == codec.cache_key
    assert torch.equal(again.encode(public.images[:5]), z)  # loaded from the cache, not retrained
    with pytest.raises(TypeError, match="public ImageSet"):
        public_autoencoder(public.images, config, AutoencoderTraining(steps=1), **kw)


def test_the_latent_backbone_trains_on_augmented_public_batches(tmp_path, monkeypatch):
    from dpbench.pretrain import autoencoder_pretraining as ae_training
    from dpbench.pretrain import pixel_pretraining as unet_training
    from dpbench.pretrain.augment import Augmentation
    from dpbench.pretrain.pixel_pretraining import PretrainConfig, pretrained_unet

    gen = torch.Generator().manual_seed(0)
    public = ImageSet(torch.randint(0, 256, (40, 1, 28, 28), generator=gen, dtype=torch.uint8), torch.arange(40) % 4)
    config = AutoencoderConfig(28, 1, width=8)
    kw = dict(pair_name="toy", seed=0, cache_dir=tmp_path, device=torch.device("cpu"))
    calls = []
    real_augment = ae_training.augment

    def counting(x, aug, generator):
        calls.append(x.shape[0])
        return real_augment(x, aug, generator)

    monkeypatch.setattr(ae_training, "augment", counting)
    monkeypatch.setattr(unet_training, "augment", counting)
    plain = public_autoencoder(public, config, AutoencoderTraining(steps=2, batch_size=8), **kw)
    assert calls == []
    codec = public_autoencoder(public, config, AutoencoderTraining(steps=2, batch_size=8, augmentation=Augmentation()),
                               **kw)
    assert calls == [8, 8] and codec.cache_key != plain.cache_key  # augmented training is another cache entry
    unet_config = UNetConfig(7, 4, 4, base_channels=8, groups=4, channel_mults=(1, 2))
    pretrained_unet(public, unet_config, PretrainConfig(steps=3, batch_size=8, augmentation=Augmentation()),
                    encoder=codec, **kw)
    assert calls == [8, 8, 8, 8, 8]  # each latent U-Net batch is augmented in pixels, then encoded


WIDE_BIAS_PLUGIN = '''
from dataclasses import dataclass

import dpbench


@dataclass(frozen=True)
class WideBiasSettings:
    last: int = dpbench.setting(2, "how many of the last bias tensors are trained", minimum=1)


class WideBiasScope(dpbench.Scope):
    name = "wide-bias"
    description = "the last `scope.last` bias tensors"
    Settings = WideBiasSettings
    chunking = "examples"

    def apply(self, model, settings):
        model.requires_grad_(False)
        biases = [p for n, p in model.named_parameters() if n.endswith(".bias")]
        for parameter in biases[-settings.last:]:
            parameter.requires_grad_(True)


@dpbench.hookimpl
def dpbench_register_scopes(register):
    register(WideBiasScope())
'''


def _wide_bias_registry(plugin_path):
    from tests.conftest import install_fake_distribution

    install_fake_distribution(plugin_path, "dpbench-wide-bias", "0.1.0", {"wide_bias": "thirdparty_wide_bias"},
                              {"thirdparty_wide_bias": WIDE_BIAS_PLUGIN})
    return load_registry()


def test_a_third_party_scope_owns_its_setting_set_as_scope_dot_name(plugin_path):
    from dpbench.api.settings import describe
    from dpbench.run.request import RunInputError, RunRequest
    from dpbench.run.resolve import resolve

    registry = _wide_bias_registry(plugin_path)
    request = RunRequest(method="dp-loda", pair="digits-mnist", epsilon=10, preset="smoke",
                         overrides={"scope": "wide-bias", "scope.last": "5"})
    settings = resolve(registry, request).settings
    assert type(settings.scope_settings).__name__ == "WideBiasSettings" and settings.scope_settings.last == 5
    assert {"name": "scope.last", "type": "int", "default": 5}.items() <= \
        next(r for r in describe(settings) if r["name"] == "scope.last").items()
    default = resolve(registry, RunRequest(method="dp-loda", pair="digits-mnist", epsilon=10, preset="smoke",
                                           overrides={"scope": "wide-bias"})).settings
    assert default.scope_settings.last == 2  # the scope's own default, not dp-loda's LoDA knobs
    for bad, message in [({"scope.lats": "3"}, "did you mean 'scope.last'"),
                         ({"scope.last": "0"}, "scope.last': must be >= 1"),
                         ({"scope.rank": "3"}, "unknown key")]:  # LoDA's knob, not wide-bias's
        with pytest.raises(RunInputError, match=message):
            resolve(registry, RunRequest(method="dp-loda", pair="digits-mnist", epsilon=10, preset="smoke",
                                         overrides={"scope": "wide-bias", **bad}))


def test_a_mistyped_setting_key_gets_a_suggestion():
    from dpbench.run.request import RunInputError, RunRequest
    from dpbench.run.resolve import resolve

    registry = load_registry()
    for key, suggestion in [("rnak", "scope.rank"), ("scope.rnak", "scope.rank"), ("stpes", "steps")]:
        with pytest.raises(RunInputError, match=f"did you mean '{suggestion}'"):
            resolve(registry, RunRequest(method="dp-loda", pair="digits-mnist", epsilon=10, overrides={key: "8"}))


def test_a_scope_declares_its_engine_needs_and_the_engine_names_no_scope():
    import ast
    from pathlib import Path

    import dpbench.privacy

    for scope in SCOPES.values():
        assert scope.per_example in ("auto", "ghost", "hooks", "vmap") and scope.chunking in ("rows", "examples")
    privacy = Path(dpbench.privacy.__file__).parent
    offenders = []
    for path in privacy.rglob("*.py"):
        text = path.read_text()
        strings = [n.value for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        offenders += [f"{path.name}: '{s}'" for s in strings if s in ("loda", "lora", "attention", "full", "classifier")]
        offenders += [f"{path.name} imports dpbench.models" for line in text.splitlines()
                      if line.startswith(("from dpbench.models", "import dpbench.models"))]
    assert offenders == []


@pytest.mark.slow  # a whole smoke run
def test_a_third_party_scope_run_records_the_implementation_its_declaration_chose(plugin_path, tmp_path,
                                                                                  shared_cache):
    from dpbench.privacy.per_example.choice import AUTO_ORDER
    from dpbench.run.progress import SilentProgress
    from dpbench.run.request import RunRequest
    from dpbench.run.runner import execute

    registry = _wide_bias_registry(plugin_path)
    request = RunRequest(method="dp-loda", pair="digits-mnist", epsilon=10, preset="smoke", out=tmp_path,
                         cache_dir=shared_cache, evaluators=[], overrides={"scope": "wide-bias", "scope.last": "3"})
    record = execute(registry, request, SilentProgress()).record
    assert record["status"] == "completed", record.get("error")
    assert record["method"]["settings"]["scope_settings"] == {"last": 3}
    # the scope declared "auto": the engine's supports() check picked the first implementation that handles biases
    assert [s["per_example"] for s in record["privacy"]["stages"]] == [AUTO_ORDER[0]]
