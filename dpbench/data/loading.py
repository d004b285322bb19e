"""Load a pair's data and check it against what the pair declares, before anything is written."""
from __future__ import annotations

from dpbench.data.types import BadPairDataError, DataMissingError, PairData, PairSpec, check_pair_data


class PairLoadError(ValueError):
    """The pair's loader broke on its own data, or returned data that contradicts the pair (bad input)."""


def load_checked(pair: PairSpec, data_root: str | None) -> PairData:
    """The pair's three splits, checked; DataMissingError when its files are not there."""
    try:
        data = pair.load(data_root)
    except DataMissingError:
        raise
    except Exception as exc:  # a loader that breaks on its own data: name the pair
        raise PairLoadError(f"pair '{pair.name}' could not load its data: {type(exc).__name__}: {exc}") from exc
    check(pair, data)
    return data


def check(pair: PairSpec, data: PairData) -> None:
    try:
        check_pair_data(pair, data)
    except BadPairDataError as exc:
        raise PairLoadError(str(exc)) from None


def image_splits(data: PairData) -> dict:
    """The three image splits by the names the overlap check uses."""
    return {"public": data.public_train.images, "private_train": data.private_train.images,
            "private_test": data.private_test.images}
