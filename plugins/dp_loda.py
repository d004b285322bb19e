"""DP-LoDA: non-linear low-dimensional conv adapters on a public-pretrained pixel U-Net, fine-tuned with DP-SGD.

Adapters: in parallel with every frozen conv (attention q/k/v/out included), conv A (in -> r, same kernel),
LeakyReLU, conv B (r -> out, zero-initialised). Only the adapters are trained; the class embedding and
norms stay frozen, as in the seed paper's adapter-only setting.
"""
import dpbench
from dpbench.backbones import pixel_unet_config, public_pixel_unet
from dpbench.finetune import DiffusionFinetuneConfig, DiffusionGenerator, finetune_diffusion
from dpbench.models.diffusion import DiffusionSchedule
from dpbench.models.loda import add_loda_adapters
from dpbench.privacy.engine import DPConfig

PRESETS = {
    # rank 4 and LeakyReLU slope 0.1: the DP-LoDA seed paper's adapter settings. The other values are
    # dpbench's choices, sized for 2 CPU cores (default) or a GPU (paper), not numbers from the paper.
    "smoke": dict(rank=4, slope=0.1, steps=4, batch_size=32, lr=2e-3, max_grad_norm=1.0, noise_multiplicity=1,
                  p_uncond=0.1, ddim_steps=5, guidance_scale=2.0, accountant="rdp"),
    "default": dict(rank=4, slope=0.1, steps=150, batch_size=256, lr=2e-3, max_grad_norm=1.0, noise_multiplicity=1,
                    p_uncond=0.1, ddim_steps=25, guidance_scale=2.0, accountant="rdp"),
    "paper": dict(rank=4, slope=0.1, steps=2000, batch_size=2048, lr=1e-3, max_grad_norm=1.0, noise_multiplicity=4,
                  p_uncond=0.1, ddim_steps=100, guidance_scale=2.0, accountant="rdp"),
}


class DPLoDA(dpbench.Method):
    name = "dp-loda"
    description = "LoDA conv adapters (r=4, LeakyReLU 0.1) on a public-pretrained pixel U-Net, DP-SGD on the adapters"
    produces = "generator"
    reference = "DP-LoDA: differentially private fine-tuning of diffusion models with low-dimensional adapters"

    def configure(self, preset, pair):
        return dict(PRESETS[preset])

    def train(self, ctx, config):
        model = public_pixel_unet(ctx, pixel_unet_config(ctx))
        total = sum(p.numel() for p in model.parameters())
        trainable = add_loda_adapters(model, rank=int(config["rank"]), slope=float(config["slope"]))
        schedule = DiffusionSchedule()
        dp = DPConfig(epsilon=ctx.epsilon, delta=ctx.delta, expected_batch_size=int(config["batch_size"]),
                      steps=int(config["steps"]), max_grad_norm=float(config["max_grad_norm"]),
                      accountant=config["accountant"], noise_multiplicity=int(config["noise_multiplicity"]))
        with ctx.stage("finetune"):
            ledger = finetune_diffusion(
                model, ctx.data.private_train, schedule,
                DiffusionFinetuneConfig(dp=dp, lr=float(config["lr"]), p_uncond=float(config["p_uncond"]),
                                        num_classes=ctx.pair.num_classes),
                device=ctx.device, seed=ctx.seed, progress=ctx.progress)
        generator = DiffusionGenerator(model.eval(), schedule, (ctx.pair.channels, ctx.pair.image_size, ctx.pair.image_size),
                                       ddim_steps=int(config["ddim_steps"]), guidance_scale=float(config["guidance_scale"]),
                                       batch_size=250, device=ctx.device)
        return dpbench.MethodResult(artifact=generator, ledger=ledger, trainable_parameters=trainable,
                                    total_parameters=total)


@dpbench.hookimpl
def dpbench_register_methods(register):
    register(DPLoDA())
