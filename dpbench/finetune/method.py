"""The shared body of every diffusion fine-tuning method: backbone, trainable scope, DP-SGD, generator.

A method plugin subclasses `DiffusionFinetuneMethod` and supplies its name, paper and presets; the backbone and
scope are ordinary settings naming registered backbones and scopes, so e.g. DP-LoDA on the latent backbone is
`--set backbone=latent`, and a third party's scope plugin is `--set scope=bitfit`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from typing import TYPE_CHECKING

from dpbench.api.settings import nested, setting
from dpbench.api.types import Method, MethodResult
from dpbench.finetune.sample_counts import samples_per_class
from dpbench.models.guidance import P_UNCOND
from dpbench.privacy.defaults import ACCOUNTANTS, DEFAULT_PHYSICAL_BATCH

if TYPE_CHECKING:
    from dpbench.api.context import MethodContext

SAMPLING_BATCH = 250


@dataclass(frozen=True)
class DiffusionSettings:
    """Settings every diffusion fine-tuning method has; presets set their values."""

    backbone: str = setting("pixel", "registered public backbone to fine-tune (`dpbench list backbones`)")
    scope: str = setting("full", "registered trainable scope: which parameters DP-SGD updates (`dpbench list scopes`)")
    scope_settings: Any = nested("the scope's own settings, set as `--set scope.KEY=VALUE` (`dpbench show METHOD` "
                                 "lists them)", prefix="scope")
    steps: int = setting(100, "DP-SGD steps (ignored when epochs is set)", minimum=1)
    epochs: float | None = setting(None, "epochs over the private split; fixes steps = epochs * n / batch_size",
                                   above=0)
    batch_size: int = setting(256, "expected batch size of Poisson sampling", minimum=1)
    lr: float = setting(2e-3, "Adam learning rate", above=0)
    max_grad_norm: float = setting(1.0, "per-example clip norm C", above=0)
    noise_multiplicity: int = setting(1, "K (timestep, noise) draws per example, averaged before clipping",
                                      minimum=1)
    min_timestep: int = setting(0, "smallest diffusion timestep drawn while fine-tuning (of T = 1000): timesteps "
                                "are uniform on [min_timestep, T)", minimum=0, below=1000)
    p_uncond: float = setting(P_UNCOND, "class-label dropout for classifier-free guidance (Ho & Salimans 2022)",
                              minimum=0, below=1)
    ddim_steps: int = setting(20, "DDIM sampling steps", minimum=1)
    # eta = 1 (stochastic, DDPM-like steps; Song et al. 2021): at eta = 0 about 30% of the public backbone's
    # samples kept a noise-like background, at eta = 1 0.7% (1,000 samples, measured without private data).
    ddim_eta: float = setting(1.0, "DDIM stochasticity eta: 0 deterministic, 1 DDPM-like", minimum=0, below=1.0001)
    guidance_scale: float = setting(2.0, "classifier-free guidance scale w", minimum=0)
    accountant: str = setting("rdp", "privacy accountant for calibration and the re-check", choices=ACCOUNTANTS)
    samples_per_class: int = setting(100, "synthetic images drawn per class for evaluation", minimum=1)
    physical_batch_size: int = setting(DEFAULT_PHYSICAL_BATCH, "examples per chunk of the DP step's per-example "
                                       "gradients (K > 1: per scope, that many rows or examples); bounds memory, "
                                       "not privacy", minimum=1)

    def with_(self, **changes) -> "DiffusionSettings":
        return dataclasses.replace(self, **changes)


def planned_steps(settings: DiffusionSettings, n_private: int) -> int:
    """`epochs` (when set) fixes the steps from the private split's size: epochs * n / expected batch."""
    if settings.epochs is None:
        return settings.steps
    return max(1, math.ceil(settings.epochs * n_private / settings.batch_size))


class DiffusionFinetuneMethod(Method):
    produces = "generator"
    Settings = DiffusionSettings
    presets: dict[str, DiffusionSettings] = {}

    def settings(self, preset, pair):
        chosen = self.presets[preset].with_(samples_per_class=samples_per_class(preset, pair))
        if preset == "paper":
            chosen = chosen.with_(**self.paper_schedule(pair))
        return chosen

    def paper_schedule(self, pair) -> dict:
        """Per-pair overrides of the paper preset (batch size, epochs, K...); none by default."""
        return {}

    def complete_settings(self, settings: DiffusionSettings, registry) -> DiffusionSettings:
        """`scope_settings` of the chosen scope's type: the preset's when they are, else that scope's defaults."""
        scope = registry.scope(settings.scope)
        if scope.Settings is None:
            return settings.with_(scope_settings=None)
        if isinstance(settings.scope_settings, scope.Settings):
            return settings
        return settings.with_(scope_settings=scope.Settings())

    def validate(self, settings: DiffusionSettings, registry) -> None:
        registry.backbone(settings.backbone)
        registry.scope(settings.scope).validate(settings.scope_settings)

    def train(self, ctx: MethodContext, settings: DiffusionSettings) -> MethodResult:
        from dpbench.finetune.diffusion_finetune import DiffusionGenerator, finetune_diffusion
        from dpbench.models.diffusion import DiffusionSchedule
        from dpbench.privacy.engine import DPSettings

        backbone = ctx.backbone(settings.backbone)
        model = backbone.unet
        total = sum(p.numel() for p in model.parameters())
        scope = ctx.scope(settings.scope)
        scope.apply(model, settings.scope_settings)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        schedule = DiffusionSchedule()
        dp = DPSettings(expected_batch_size=settings.batch_size, steps=planned_steps(settings, len(ctx.private)),
                        max_grad_norm=settings.max_grad_norm, accountant=settings.accountant,
                        noise_multiplicity=settings.noise_multiplicity,
                        physical_batch_size=settings.physical_batch_size, per_example=scope.per_example,
                        chunking=scope.chunking)
        with ctx.stage("finetune"):
            finetune_diffusion(ctx, model, schedule, dp, lr=settings.lr, p_uncond=settings.p_uncond,
                               min_timestep=settings.min_timestep,
                               codec=backbone.codec)
        generator = DiffusionGenerator(model.eval(), schedule, backbone.sample_shape, ddim_steps=settings.ddim_steps,
                                       ddim_eta=settings.ddim_eta, guidance_scale=settings.guidance_scale,
                                       batch_size=SAMPLING_BATCH,
                                       device=ctx.device, codec=backbone.codec)
        return MethodResult(artifact=generator, trainable_parameters=trainable, total_parameters=total,
                            notes={"backbone": settings.backbone, "scope": settings.scope})
