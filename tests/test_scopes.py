"""Trainable scopes, LoRA adapters and the latent autoencoder."""
import pytest
import torch

from dpbench.api.registry import UnknownNameError, load_registry
from dpbench.builtins.scopes import AttentionScope, FullScope, LoDAScope, LoRAScope
from dpbench.data.types import ImageSet
from dpbench.finetune.method import DiffusionSettings, parse_parts
from dpbench.models.autoencoder import AutoencoderConfig
from dpbench.models.lora import LoRAConv1x1, LoRALinear, lora_targets
from dpbench.models.unet import AttentionBlock, ClassConditionalUNet, UNetConfig
from dpbench.pretrain.autoencoder_pretraining import AutoencoderTraining, public_autoencoder

torch.set_num_threads(2)
SCOPES = {scope.name: scope for scope in (FullScope(), AttentionScope(), LoRAScope(), LoDAScope())}


def apply_scope(model, scope, **settings):
    """Apply a built-in scope with the diffusion settings' defaults (overridden by `settings`); returns the
    trainable parameter count."""
    SCOPES[scope].apply(model, DiffusionSettings(scope=scope).with_(**settings))
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
    apply_scope(model, "attention", attention_blocks="mid+up")
    parts = {n.split(".")[0] for n in _trainable(model)}
    assert parts == {"mid", "up", "class_embed"}
    with pytest.raises(ValueError, match="attention_blocks"):
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
    with pytest.raises(ValueError, match="attention_blocks"):
        apply_scope(_unet(), "attention", attention_blocks="middle")


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
