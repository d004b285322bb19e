"""DP-Diffusion: DP-SGD fine-tuning of every parameter of the public-pretrained pixel U-Net."""
import dpbench
from dpbench.diffusion_method import DiffusionFinetuneMethod, generator_settings

FULL = dict(backbone="pixel", scope="full")

PRESETS = {
    "smoke": generator_settings(**FULL, steps=4, batch_size=32, ddim_steps=5),
    # dpbench's CPU-sized choice, matched to dp-loda's default so the scopes compare at equal steps and batch.
    "default": generator_settings(**FULL, steps=100, batch_size=256, lr=5e-4),
    # DPDM (Dockhorn et al. 2023, Tab. 6, MNIST): batch 4096, noise multiplicity K = 32, clip C = 1, lr 3e-4.
    # Its 300 epochs of 60k MNIST at batch 4096 is ~4,400 steps.
    "paper": generator_settings(**FULL, steps=4400, batch_size=4096, lr=3e-4, max_grad_norm=1.0,
                                noise_multiplicity=32, ddim_steps=100),
}


class DPDiffusion(DiffusionFinetuneMethod):
    name = "dp-diffusion"
    description = "Full fine-tuning of a public-pretrained pixel U-Net with DP-SGD"
    reference = ("Ghalebikesabi et al. 2023, Differentially Private Diffusion Models Generate Useful Synthetic Images; "
                 "Dockhorn et al. 2023, Differentially Private Diffusion Models (DPDM)")
    presets = PRESETS


@dpbench.hookimpl
def dpbench_register_methods(register):
    register(DPDiffusion())
