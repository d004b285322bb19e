"""The public-only reference: the public-pretrained backbone with no private fine-tuning, sampled and
evaluated like every method. It touches no private data, so it runs at ε = 0 (`--eps 0`)."""
import dpbench
from dpbench.backbones import BACKBONES, public_backbone
from dpbench.diffusion_method import SAMPLING_BATCH
from dpbench.finetune import DiffusionGenerator
from dpbench.models.diffusion import DiffusionSchedule
from dpbench.sampling import samples_per_class

PRESETS = {
    "smoke": dict(backbone="pixel", ddim_steps=5, guidance_scale=2.0),
    "default": dict(backbone="pixel", ddim_steps=20, guidance_scale=2.0),
    "paper": dict(backbone="pixel", ddim_steps=100, guidance_scale=2.0),
}


class PublicOnly(dpbench.Method):
    name = "public-only"
    description = "Reference: the public-pretrained model without private fine-tuning (ε = 0; run with --eps 0)"
    produces = "generator"
    reference = "the pre-trained starting point of every generator method"
    trains_on_private = False

    def configure(self, preset, pair):
        return {**PRESETS[preset], "samples_per_class": samples_per_class(preset, pair)}

    def validate(self, config):
        if config["backbone"] not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got '{config['backbone']}'")

    def train(self, ctx, config):
        backbone = public_backbone(ctx, config["backbone"])
        total = sum(p.numel() for p in backbone.unet.parameters())
        generator = DiffusionGenerator(backbone.unet.eval(), DiffusionSchedule(), backbone.sample_shape,
                                       ddim_steps=int(config["ddim_steps"]), guidance_scale=float(config["guidance_scale"]),
                                       batch_size=SAMPLING_BATCH, device=ctx.device, codec=backbone.codec)
        ledger = dpbench.PrivacyLedger(accountant="rdp", noise_multiplier=0.0, sample_rate=0.0, steps=0,
                                       max_grad_norm=None, delta=ctx.delta, epsilon_target=0.0)
        return dpbench.MethodResult(artifact=generator, ledger=ledger, trainable_parameters=0, total_parameters=total)


@dpbench.hookimpl
def dpbench_register_methods(register):
    register(PublicOnly())
