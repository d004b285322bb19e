"""BitFit as a dpbench trainable scope: only the bias terms of the backbone are fine-tuned under DP.

Ben Zaken, Ravfogel and Goldberg 2022, "BitFit: Simple Parameter-efficient Fine-tuning for Transformer-based
Masked Language-models" (ACL). Any method whose settings have a `scope` key can use it: `--set scope=bitfit`.

It has no settings of its own and declares no per-example implementation ("auto"): the DP engine takes ghost
clipping, whose supports() check passes for bias-only training, and records it in the run's ledger.
"""
import dpbench


class BitFitScope(dpbench.Scope):
    name = "bitfit"
    description = "bias terms only (BitFit)"
    reference = "Ben Zaken et al. 2022, BitFit, ACL"

    def apply(self, model, settings):
        model.requires_grad_(False)
        for name, parameter in model.named_parameters():
            if name.endswith(".bias"):
                parameter.requires_grad_(True)


@dpbench.hookimpl
def dpbench_register_scopes(register):
    register(BitFitScope())
