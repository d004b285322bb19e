"""The public-only reference: the public-pretrained backbone with no private fine-tuning, sampled and
evaluated like every method. It touches no private data (its context holds none), so it runs at ε = 0."""
import dataclasses
from dataclasses import dataclass

import dpbench
from dpbench.finetune.method import SAMPLING_BATCH
from dpbench.finetune.sample_counts import samples_per_class


@dataclass(frozen=True)
class PublicOnlySettings:
    backbone: str = dpbench.setting("pixel", "registered public backbone to sample from")
    ddim_steps: int = dpbench.setting(20, "DDIM sampling steps", minimum=1)
    ddim_eta: float = dpbench.setting(1.0, "DDIM stochasticity eta: 0 deterministic, 1 DDPM-like", minimum=0,
                                      below=1.0001)
    guidance_scale: float = dpbench.setting(2.0, "classifier-free guidance scale w", minimum=0)
    samples_per_class: int = dpbench.setting(100, "synthetic images drawn per class for evaluation", minimum=1)


PRESETS = {
    "smoke": PublicOnlySettings(ddim_steps=5),
    "default": PublicOnlySettings(ddim_steps=20),
    "paper": PublicOnlySettings(ddim_steps=100),
}


class PublicOnly(dpbench.Method):
    name = "public-only"
    description = "Reference: the public-pretrained model without private fine-tuning (ε = 0; run with --eps 0)"
    produces = "generator"
    reference = "the pre-trained starting point of every generator method"
    trains_on_private = False
    Settings = PublicOnlySettings

    def settings(self, preset, pair):
        return dataclasses.replace(PRESETS[preset], samples_per_class=samples_per_class(preset, pair))

    def validate(self, settings, registry):
        registry.backbone(settings.backbone)

    def train(self, ctx, settings):
        from dpbench.finetune.diffusion_finetune import DiffusionGenerator
        from dpbench.models.diffusion import DiffusionSchedule

        backbone = ctx.backbone(settings.backbone)
        total = sum(p.numel() for p in backbone.unet.parameters())
        generator = DiffusionGenerator(backbone.unet.eval(), DiffusionSchedule(), backbone.sample_shape,
                                       ddim_steps=settings.ddim_steps, ddim_eta=settings.ddim_eta,
                                       guidance_scale=settings.guidance_scale,
                                       batch_size=SAMPLING_BATCH, device=ctx.device, codec=backbone.codec)
        return dpbench.MethodResult(artifact=generator, trainable_parameters=0, total_parameters=total,
                                    notes={"backbone": settings.backbone})


@dpbench.hookimpl
def dpbench_register_methods(register):
    register(PublicOnly())
