"""DP-LoRA: LoRA adapters on a public-pretrained latent diffusion U-Net's attention and projection layers,
base frozen, trained with DP-SGD. The paper reports about 0.47M trainable parameters on its (much larger)
U-Net; `rank` scales the count here."""
import dpbench
from dpbench.diffusion_method import DiffusionFinetuneMethod, generator_settings

LORA = dict(backbone="latent", scope="lora", rank=4, lora_alpha=4.0)

PRESETS = {
    "smoke": generator_settings(**LORA, steps=4, batch_size=32, ddim_steps=5),
    "default": generator_settings(**LORA, steps=100, batch_size=256, lr=2e-3),  # dpbench's CPU-sized choice
    # Tsai et al. (DP-LoRA) use noise multiplicity K = 4-12; K = 8 is taken here. Batch, steps and lr are
    # dpbench's choice.
    "paper": generator_settings(**LORA, steps=2000, batch_size=2048, lr=1e-3, noise_multiplicity=8, ddim_steps=100),
}


class DPLoRA(DiffusionFinetuneMethod):
    name = "dp-lora"
    description = "LoRA on attention and projection layers of a public-pretrained latent diffusion U-Net, DP-SGD"
    reference = "Tsai et al. 2024, Differentially Private Fine-Tuning of Diffusion Models (DP-LoRA)"
    presets = PRESETS


@dpbench.hookimpl
def dpbench_register_methods(register):
    register(DPLoRA())
