"""Downstream utility: train the pair's classifier on synthetic data, test it on the real private test split.

Nothing is selected on the test split: each classifier trains for a fixed number of epochs and is tested once.
The score is the mean of N independent fits (`CLASSIFIER_FITS`), so that the evaluator's own noise stays below
the differences between methods; the public-only and real-data references use the same N fits.
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch

from dpbench.data.types import ImageSet, PairSpec
from dpbench.models.classifiers import accuracy, build_classifier, fit_classifier
from dpbench.seeds import stream_seed
from dpbench.storage import CACHE_FILE_MODE, atomic_write_bytes, cache_key, private_dir, tensor_digest

# Fixed training budgets per preset (no early stopping, so nothing can be tuned on the test split).
DOWNSTREAM_TRAINING = {
    "smoke": {"epochs": 1, "batch_size": 64, "lr": 1e-3},
    "default": {"epochs": 10, "batch_size": 64, "lr": 1e-3},
    "paper": {"epochs": 30, "batch_size": 128, "lr": 1e-3},
}

# Classifier fits averaged per score: the fewest whose score moves by at most 0.8 points (SD over evaluation seeds)
# on a fixed synthetic set. Measured by benchmarks/classifier_fit_spread.py on the public-only generator's 1,000
# default-preset images (benchmarks/RESULTS.md, "The accuracy evaluator's own spread"): one fit 1.64 points, 5 fits
# 0.91 over 10 evaluation seeds (0.73 predicted), 6 fits 0.77 (0.67 predicted, 95% upper bound 0.80). Smoke keeps
# 2, so that every smoke run averages fits too.
CLASSIFIER_FITS = {"smoke": 2, "default": 6, "paper": 6}


@dataclass(frozen=True)
class FitScores:
    """Test accuracies of independently seeded fits of one classifier on one training set."""

    fits: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.fits) if self.fits else math.nan

    @property
    def stderr(self) -> float | None:
        """The within-run standard error of the mean (sample SD over √N); None for a single fit."""
        return statistics.stdev(self.fits) / math.sqrt(len(self.fits)) if len(self.fits) > 1 else None

    def extra(self) -> dict:
        return {"fits": list(self.fits), "n_fits": len(self.fits), "stderr": self.stderr}


def fit_seeds(seed: int, n_fits: int) -> list[int]:
    """Fit i's seed (its initialisation and batch order) from the evaluation seed; the first N of N + 1 are N's."""
    if n_fits < 1:
        raise ValueError(f"a score needs at least one classifier fit, got n_fits={n_fits}")
    return [stream_seed(seed, "classifier fit", i) for i in range(n_fits)]


def train_and_test(pair: PairSpec, train: ImageSet, test: ImageSet, *, preset: str, seed: int,
                   device: torch.device, progress=None) -> float:
    """One classifier fit on `train` (initialised and ordered by `seed`), tested once on `test`."""
    settings = DOWNSTREAM_TRAINING[preset]
    torch.manual_seed(seed)
    model = build_classifier(pair.classifier, pair.channels, pair.image_size, pair.num_classes)
    fit_classifier(model, train.images, train.labels, epochs=settings["epochs"], batch_size=settings["batch_size"],
                   lr=settings["lr"], device=device, seed=seed, progress=progress)
    return accuracy(model, test.images, test.labels, device)


def score_fits(pair: PairSpec, train: ImageSet, test: ImageSet, *, preset: str, seed: int, device: torch.device,
               n_fits: int | None = None, progress=None) -> FitScores:
    """`n_fits` (by default the preset's CLASSIFIER_FITS) fits, each seeded from `seed` by `fit_seeds`."""
    n_fits = CLASSIFIER_FITS[preset] if n_fits is None else n_fits
    return FitScores(tuple(train_and_test(pair, train, test, preset=preset, seed=s, device=device, progress=progress)
                           for s in fit_seeds(seed, n_fits)))


def _cached_scores(folder: Path, key: dict, compute) -> FitScores:
    path = private_dir(folder) / (cache_key(key) + ".json")
    if path.exists():
        return FitScores(tuple(json.loads(path.read_text())["fits"]))
    scores, extra = compute()
    entry = {"key": key, "accuracy": scores.mean, "fits": list(scores.fits), **extra}
    atomic_write_bytes(path, json.dumps(entry).encode(), CACHE_FILE_MODE)
    return scores


def real_data_scores(pair: PairSpec, private_train: ImageSet, test: ImageSet, labels: torch.Tensor, *,
                     preset: str, seed: int, device: torch.device, cache_dir: Path, progress=None) -> FitScores:
    """The ceiling synthetic data can approach: the same classifier fits on as many real private-train images per
    class as the synthetic set has (the first ones of each class, in split order), each tested once. A reference,
    never released: no artifact of the run carries these images."""
    counts = torch.bincount(labels, minlength=pair.num_classes).tolist()
    n_fits = CLASSIFIER_FITS[preset]
    key = {"pair": pair.name, "preset": preset, "seed": seed, "counts": counts, "classifier": pair.classifier,
           "training": DOWNSTREAM_TRAINING[preset], "fits": n_fits,
           "data": tensor_digest(private_train.images, private_train.labels, test.images, test.labels)}

    def compute():
        index = torch.cat([(private_train.labels == c).nonzero().flatten()[:n] for c, n in enumerate(counts)])
        scores = score_fits(pair, private_train.subset(index), test, preset=preset, seed=seed, device=device,
                            progress=progress)
        return scores, {"n": len(index)}

    return _cached_scores(Path(cache_dir) / "real_data", key, compute)


def public_only_scores(pair: PairSpec, public: ImageSet, test: ImageSet, *, preset: str, seed: int,
                       device: torch.device, cache_dir: Path, progress=None) -> FitScores:
    """The same classifier fits on public data only: what a reader compares DP fine-tuning against."""
    n_fits = CLASSIFIER_FITS[preset]
    key = {"pair": pair.name, "preset": preset, "seed": seed, "n_public": len(public),
           "classifier": pair.classifier, "training": DOWNSTREAM_TRAINING[preset], "fits": n_fits,
           "data": tensor_digest(public.images, public.labels, test.images, test.labels)}
    return _cached_scores(Path(cache_dir) / "public_only", key, lambda: (
        score_fits(pair, public, test, preset=preset, seed=seed, device=device, progress=progress), {}))


def real_data_accuracy(*args, **kwargs) -> float:
    """`real_data_scores`' mean."""
    return real_data_scores(*args, **kwargs).mean


def public_only_accuracy(*args, **kwargs) -> float:
    """`public_only_scores`' mean."""
    return public_only_scores(*args, **kwargs).mean
