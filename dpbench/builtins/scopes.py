"""The built-in trainable scopes: which parameters of a pre-trained diffusion U-Net DP fine-tuning may change.

- full: every parameter (DP-Diffusion: Ghalebikesabi et al. 2023; DPDM: Dockhorn et al. 2023).
- attention: the self-attention blocks (norm, q, k, v, out) and the class-conditioning embedder
  (DP-LDM: Lyu et al. 2023); `attention_blocks` picks which of the U-Net's parts ("down", "mid", "up") are tuned.
- lora: LoRA on attention and projection layers (DP-LoRA: Tsai et al. 2024).
- loda: LoDA conv adapters (DP-LoDA: Liu et al. 2024).
"""
import dpbench
from dpbench.finetune.method import parse_parts
from dpbench.models.loda import add_loda_adapters
from dpbench.models.lora import add_lora_adapters
from dpbench.models.unet import AttentionBlock


class FullScope(dpbench.Scope):
    name = "full"
    description = "every parameter of the backbone"
    reference = "Ghalebikesabi et al. 2023; Dockhorn et al. 2023 (DPDM)"

    def apply(self, model, settings):
        model.requires_grad_(True)


class AttentionScope(dpbench.Scope):
    name = "attention"
    description = "self-attention blocks (by `attention_blocks`) and the class embedder"
    reference = "Lyu et al. 2023, DP-LDM, arXiv:2305.15759"

    def apply(self, model, settings):
        parts = parse_parts(settings.attention_blocks)
        model.requires_grad_(False)
        for name, module in model.named_modules():
            if isinstance(module, AttentionBlock) and name.split(".")[0] in parts:
                module.requires_grad_(True)
        model.get_submodule("class_embed").requires_grad_(True)


class LoRAScope(dpbench.Scope):
    name = "lora"
    description = "LoRA (rank `rank`, scale `lora_alpha`) on attention and projection layers; base frozen"
    reference = "Tsai et al. 2024, DP-LoRA"

    def apply(self, model, settings):
        add_lora_adapters(model, rank=settings.rank, alpha=settings.lora_alpha)


class LoDAScope(dpbench.Scope):
    name = "loda"
    description = "LoDA conv adapters (rank `rank`, LeakyReLU `slope`) beside every conv; base frozen"
    reference = "Liu et al. 2024, DP-LoDA, arXiv:2406.05257"

    def apply(self, model, settings):
        add_loda_adapters(model, rank=settings.rank, slope=settings.slope)


@dpbench.hookimpl
def dpbench_register_scopes(register):
    for scope in (FullScope(), AttentionScope(), LoRAScope(), LoDAScope()):
        register(scope)
