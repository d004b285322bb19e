"""The digest of a pair's data: a changed dataset is a different config."""
from __future__ import annotations

from dpbench.data.types import PairData
from dpbench.storage import tensor_digest


def data_digest(data: PairData) -> str:
    """A digest of every split's pixels and labels."""
    splits = (data.public_train, data.private_train, data.private_test)
    return tensor_digest(*[t for s in splits for t in (s.images, s.labels)])
