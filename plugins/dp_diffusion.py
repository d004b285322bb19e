"""DP-Diffusion: DP-SGD fine-tuning of every parameter of the public-pretrained pixel U-Net."""
import dpbench
from dpbench.diffusion_method import DiffusionFinetuneMethod, generator_settings
from dpbench.paper_schedules import DPDM_LR, dpdm_schedule

FULL = dict(backbone="pixel", scope="full")

PRESETS = {
    "smoke": generator_settings(**FULL, steps=4, batch_size=32, ddim_steps=5),
    # dpbench's CPU-sized choice, matched to dp-loda's default so the scopes compare at equal steps and batch.
    "default": generator_settings(**FULL, steps=100, batch_size=256, lr=5e-4),
    # DPDM (Dockhorn et al. 2023) trains with Adam lr 3e-4, C = 1 and samples with 50 DDIM steps; batch size,
    # epochs and K come per pair from dpbench.paper_schedules (DPDM's released configs).
    "paper": generator_settings(**FULL, lr=DPDM_LR, max_grad_norm=1.0, ddim_steps=50),
}


class DPDiffusion(DiffusionFinetuneMethod):
    name = "dp-diffusion"
    description = "Full fine-tuning of a public-pretrained pixel U-Net with DP-SGD"
    reference = ("Ghalebikesabi et al. 2023, Differentially Private Diffusion Models Generate Useful Synthetic Images; "
                 "Dockhorn et al. 2023, Differentially Private Diffusion Models (DPDM)")
    presets = PRESETS

    def paper_schedule(self, pair):
        return dpdm_schedule(pair)


@dpbench.hookimpl
def dpbench_register_methods(register):
    register(DPDiffusion())
