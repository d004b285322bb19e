"""The shared body of every diffusion fine-tuning method: backbone, trainable scope, DP-SGD, generator.

A method plugin subclasses `DiffusionFinetuneMethod` and supplies its name, paper and presets; the
backbone ("pixel" or "latent") and scope ("full", "attention", "lora", "loda") are ordinary settings, so
e.g. DP-LoDA on the latent backbone is `--set backbone=latent`.
"""
from __future__ import annotations

import math

from dpbench.backbones import BACKBONES, public_backbone
from dpbench.finetune import DiffusionFinetuneConfig, DiffusionGenerator, finetune_diffusion
from dpbench.interface import Method, MethodResult, RunContext
from dpbench.models.diffusion import DiffusionSchedule
from dpbench.models.scopes import SCOPES, apply_scope, parse_parts
from dpbench.privacy.accountant import ACCOUNTANTS
from dpbench.privacy.engine import DPConfig
from dpbench.sampling import samples_per_class

SAMPLING_BATCH = 250


class DiffusionFinetuneMethod(Method):
    produces = "generator"
    presets: dict[str, dict] = {}

    def configure(self, preset, pair):
        config = {**self.presets[preset], "samples_per_class": samples_per_class(preset, pair)}
        if preset == "paper":
            config.update(self.paper_schedule(pair))
        return config

    def paper_schedule(self, pair) -> dict:
        """Per-pair overrides of the paper preset (batch size, epochs, K...); none by default."""
        return {}

    def validate(self, config: dict) -> None:
        if config["backbone"] not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got '{config['backbone']}'")
        if config["scope"] not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got '{config['scope']}'")
        if config["accountant"] not in ACCOUNTANTS:
            raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got '{config['accountant']}'")
        parse_parts(str(config["attention_blocks"]))
        for key in ("steps", "batch_size", "noise_multiplicity", "rank", "ddim_steps", "samples_per_class"):
            if int(config[key]) < 1:
                raise ValueError(f"{key} must be >= 1, got {config[key]}")
        if config["epochs"] is not None and float(config["epochs"]) <= 0:
            raise ValueError(f"epochs must be > 0 (or null to use steps), got {config['epochs']}")
        for key in ("lr", "max_grad_norm"):
            if float(config[key]) <= 0:
                raise ValueError(f"{key} must be > 0, got {config[key]}")
        if not 0 <= float(config["p_uncond"]) < 1:
            raise ValueError(f"p_uncond must be in [0, 1), got {config['p_uncond']}")

    def train(self, ctx: RunContext, config: dict) -> MethodResult:
        backbone = public_backbone(ctx, config["backbone"])
        model = backbone.unet
        total = sum(p.numel() for p in model.parameters())
        trainable = apply_scope(model, config["scope"], rank=int(config["rank"]), slope=float(config["slope"]),
                                lora_alpha=float(config["lora_alpha"]), attention_blocks=str(config["attention_blocks"]))
        schedule = DiffusionSchedule()
        dp = DPConfig(epsilon=ctx.epsilon, delta=ctx.delta, expected_batch_size=int(config["batch_size"]),
                      steps=planned_steps(config, len(ctx.data.private_train)),
                      max_grad_norm=float(config["max_grad_norm"]),
                      accountant=config["accountant"], noise_multiplicity=int(config["noise_multiplicity"]))
        with ctx.stage("finetune"):
            ledger = finetune_diffusion(
                model, ctx.data.private_train, schedule,
                DiffusionFinetuneConfig(dp=dp, lr=float(config["lr"]), p_uncond=float(config["p_uncond"]),
                                        num_classes=ctx.pair.num_classes),
                device=ctx.device, seed=ctx.seed, progress=ctx.progress, codec=backbone.codec)
        generator = DiffusionGenerator(model.eval(), schedule, backbone.sample_shape, ddim_steps=int(config["ddim_steps"]),
                                       guidance_scale=float(config["guidance_scale"]), batch_size=SAMPLING_BATCH,
                                       device=ctx.device, codec=backbone.codec)
        return MethodResult(artifact=generator, ledger=ledger, trainable_parameters=trainable, total_parameters=total,
                            notes={"backbone": config["backbone"], "scope": config["scope"]})


def planned_steps(config: dict, n_private: int) -> int:
    """`epochs` (when set) fixes the steps from the private split's size: epochs * n / expected batch."""
    if config.get("epochs") is None:
        return int(config["steps"])
    return max(1, math.ceil(float(config["epochs"]) * n_private / int(config["batch_size"])))


def generator_settings(**overrides) -> dict:
    """Settings every diffusion method has, with dpbench's CPU-sized defaults; presets override them."""
    base = dict(backbone="pixel", scope="full", rank=4, slope=0.1, lora_alpha=4.0, attention_blocks="all",
                steps=100, epochs=None, batch_size=256, lr=2e-3, max_grad_norm=1.0, noise_multiplicity=1,
                p_uncond=0.1,  # class dropout for classifier-free guidance (Ho & Salimans 2022)
                ddim_steps=20, guidance_scale=2.0, accountant="rdp")
    unknown = set(overrides) - set(base)
    if unknown:
        raise KeyError(f"unknown generator settings {sorted(unknown)}")
    return {**base, **overrides}
