"""How many synthetic images a generator draws for evaluation, per preset and pair.

The paper preset follows the seed papers' evaluation protocol: 60k synthetic images for MNIST-like pairs
(DPDM, Dockhorn et al. 2023) and 50k for CIFAR-10-like pairs (DP-LoDA; 1M is the option
`--set samples_per_class=100000`). The smaller presets are sized for 2 CPU cores.
"""
from __future__ import annotations

from dpbench.data.types import PairSpec

SMALL_PRESETS = {"smoke": 20, "default": 100}
PAPER_TOTAL = {"cnn": 60_000, "resnet9": 50_000}  # by the pair's downstream classifier family


def samples_per_class(preset: str, pair: PairSpec) -> int:
    if preset == "paper":
        return PAPER_TOTAL.get(pair.classifier, 50_000) // pair.num_classes
    return SMALL_PRESETS[preset]
