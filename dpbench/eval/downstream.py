"""Downstream utility: train the pair's classifier on synthetic data, test it on the real private test split.

Nothing is selected on the test split: the classifier trains for a fixed number of epochs and is
tested once. The public-only reference trains the same classifier on the public split instead.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from dpbench.data.types import ImageSet, PairSpec
from dpbench.models.classifiers import accuracy, build_classifier, fit_classifier
from dpbench.storage import CACHE_FILE_MODE, atomic_write_bytes, cache_key, private_dir, tensor_digest

# Fixed training budgets per preset (no early stopping, so nothing can be tuned on the test split).
DOWNSTREAM_TRAINING = {
    "smoke": {"epochs": 1, "batch_size": 64, "lr": 1e-3},
    "default": {"epochs": 10, "batch_size": 64, "lr": 1e-3},
    "paper": {"epochs": 30, "batch_size": 128, "lr": 1e-3},
}


def train_and_test(pair: PairSpec, train: ImageSet, test: ImageSet, *, preset: str, seed: int,
                   device: torch.device, progress=None) -> float:
    settings = DOWNSTREAM_TRAINING[preset]
    torch.manual_seed(seed)
    model = build_classifier(pair.classifier, pair.channels, pair.image_size, pair.num_classes)
    fit_classifier(model, train.images, train.labels, epochs=settings["epochs"], batch_size=settings["batch_size"],
                   lr=settings["lr"], device=device, seed=seed, progress=progress)
    return accuracy(model, test.images, test.labels, device)


def real_data_accuracy(pair: PairSpec, private_train: ImageSet, test: ImageSet, labels: torch.Tensor, *,
                       preset: str, seed: int, device: torch.device, cache_dir: Path) -> float:
    """The ceiling synthetic data can approach: the same classifier trained on as many real private-train images
    per class as the synthetic set has (the first ones of each class, in split order), tested once. A reference,
    never released: no artifact of the run carries these images."""
    counts = torch.bincount(labels, minlength=pair.num_classes).tolist()
    key = {"pair": pair.name, "preset": preset, "seed": seed, "counts": counts, "classifier": pair.classifier,
           "training": DOWNSTREAM_TRAINING[preset],
           "data": tensor_digest(private_train.images, private_train.labels, test.images, test.labels)}
    path = private_dir(Path(cache_dir) / "real_data") / (cache_key(key) + ".json")
    if path.exists():
        return json.loads(path.read_text())["accuracy"]
    index = torch.cat([(private_train.labels == c).nonzero().flatten()[:n] for c, n in enumerate(counts)])
    value = train_and_test(pair, private_train.subset(index), test, preset=preset, seed=seed, device=device)
    atomic_write_bytes(path, json.dumps({"key": key, "accuracy": value, "n": len(index)}).encode(), CACHE_FILE_MODE)
    return value


def public_only_accuracy(pair: PairSpec, public: ImageSet, test: ImageSet, *, preset: str, seed: int,
                         device: torch.device, cache_dir: Path, progress=None) -> float:
    """The same classifier trained on public data only: what a reader compares DP fine-tuning against."""
    key = {"pair": pair.name, "preset": preset, "seed": seed, "n_public": len(public),
           "classifier": pair.classifier, "training": DOWNSTREAM_TRAINING[preset],
           "data": tensor_digest(public.images, public.labels, test.images, test.labels)}
    path = private_dir(Path(cache_dir) / "public_only") / (cache_key(key) + ".json")
    if path.exists():
        return json.loads(path.read_text())["accuracy"]
    value = train_and_test(pair, public, test, preset=preset, seed=seed, device=device, progress=progress)
    atomic_write_bytes(path, json.dumps({"key": key, "accuracy": value}).encode(), CACHE_FILE_MODE)
    return value
