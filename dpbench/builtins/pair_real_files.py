"""Built-in plugin: the real-data pairs (svhn-mnist, imagenet32-cifar10, imagenet32-cifar10-1pct,
imagenet-celeba, imagenet-celeba-64), registered exactly as a third party would."""
import dpbench
from dpbench.builtins.real_pair_specs import REAL_PAIRS


@dpbench.hookimpl
def dpbench_register_pairs(register):
    for pair in REAL_PAIRS:
        register(pair)
