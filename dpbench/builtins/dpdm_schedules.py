"""Per-pair DP training schedules of the `paper` preset, from DPDM's released configs.

Dockhorn et al. 2023 (DPDM, github.com/nv-tlabs/DPDM, configs/<dataset>/train_eps_10.0.yaml) train with
Adam lr 3e-4, clip norm C = 1 and these batch sizes, epochs and noise multiplicities. dp-diffusion uses them
as its paper setting; the adapter methods reuse them where their own papers' schedules are not reproduced
here, which each plugin says.
"""
from __future__ import annotations

from dpbench.data.types import PairSpec

DPDM_LR = 3e-4
DPDM_SCHEDULES = {
    "mnist": dict(batch_size=4096, epochs=300, noise_multiplicity=32),     # configs/mnist_28
    "cifar10": dict(batch_size=2048, epochs=500, noise_multiplicity=8),    # configs/cifar10_32
    "celeba32": dict(batch_size=2048, epochs=300, noise_multiplicity=32),  # configs/celeba_32
    "celeba64": dict(batch_size=2048, epochs=300, noise_multiplicity=8),   # configs/celeba_64
}
PAIR_DATASET = {
    "digits-mnist": "mnist", "svhn-mnist": "mnist",
    "imagenet32-cifar10": "cifar10", "imagenet32-cifar10-1pct": "cifar10",
    "imagenet-celeba": "celeba32", "imagenet-celeba-64": "celeba64",
}


def dpdm_schedule(pair: PairSpec) -> dict:
    """DPDM's schedule for the pair's private dataset; a pair dpbench does not know gets the MNIST one for
    small grayscale images and the CIFAR-10 one otherwise."""
    dataset = PAIR_DATASET.get(pair.name) or ("mnist" if pair.channels == 1 else "cifar10")
    return dict(DPDM_SCHEDULES[dataset])
