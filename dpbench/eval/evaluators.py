"""The core's evaluators. They are registered by the built-in `evaluators` plugin, like any third party's."""
from __future__ import annotations

from typing import TYPE_CHECKING

from dpbench.api.types import Evaluator, Metric
from dpbench.data.types import ImageSet

if TYPE_CHECKING:  # the scoring code (torch, torch-fidelity) loads when an evaluator runs, not when it registers
    from dpbench.api.context import EvalContext


class FidKidEvaluator(Evaluator):
    name = "fid"
    description = "FID and KID (torch-fidelity, Inception 2015-12-05) of samples against the real private test split"
    applies_to = ("generator",)

    def settings(self, preset: str) -> dict:
        return {"reference": "private_test", "feature_extractor": "inception-v3-compat 2015-12-05 pool3"}

    def evaluate(self, ctx: EvalContext) -> list[Metric]:
        from dpbench.eval.fid import fid_kid

        reference = ctx.private_test.images[:ctx.max_samples]  # a trial's reference is capped like its samples
        scores = fid_kid(ctx.samples, reference, cache_dir=ctx.cache_dir / "fidelity",
                         reference_cache_key=f"{ctx.pair.name}-private-test-{len(reference)}", device=ctx.device,
                         progress=ctx.progress)
        extra = {"n_generated": scores["n_generated"], "n_reference": scores["n_reference"]}
        kid_extra = {**extra, **{k: scores[k] for k in ("kid_std", "kid_subset_size", "kid_subsets")}}
        return [
            Metric("fid", scores["fid"], higher_is_better=False, extra=extra),
            Metric("kid", scores["kid"], higher_is_better=False, extra=kid_extra),
        ]


class AccuracyEvaluator(Evaluator):
    name = "accuracy"
    description = "Accuracy on the real private test split of the pair's classifier trained on the synthetic samples"
    applies_to = ("generator", "classifier")

    def settings(self, preset: str) -> dict:
        from dpbench.eval.downstream import CLASSIFIER_FITS, DOWNSTREAM_TRAINING

        return {"test_split": "private_test", "training": DOWNSTREAM_TRAINING[preset],
                "classifier_fits": CLASSIFIER_FITS[preset]}

    def evaluate(self, ctx: EvalContext) -> list[Metric]:
        from dpbench.eval.downstream import public_only_scores, score_fits

        test = ctx.private_test
        task = ctx.progress.task("downstream classifier", total=None)
        if ctx.produces == "generator":  # the mean of N classifier fits, each fit's accuracy in the extra
            synthetic = ImageSet(ctx.samples, ctx.sample_labels)
            scores = score_fits(ctx.pair, synthetic, test, preset=ctx.preset, seed=ctx.seed, device=ctx.device,
                                progress=ctx.progress)  # each fit's batches done / total
            metrics = [Metric("accuracy", scores.mean, higher_is_better=True,
                              extra={**scores.extra(), "n_test": len(test)})]
        else:
            predictions = ctx.artifact.predict(test.images)
            metrics = [Metric("accuracy", (predictions.cpu() == test.labels).float().mean().item(),
                              higher_is_better=True)]
        public = ctx.public_train
        if len(public) and int(public.labels.max()) < ctx.pair.num_classes:  # else public labels are another label space
            reference = public_only_scores(ctx.pair, public, test, preset=ctx.preset, seed=ctx.seed,
                                           device=ctx.device, cache_dir=ctx.cache_dir, progress=ctx.progress)
            metrics.append(Metric("accuracy_public_only", reference.mean, higher_is_better=True, reference=True,
                                  extra=reference.extra()))
        task.close()
        return metrics


class RealDataCeilingEvaluator(Evaluator):
    name = "accuracy_real_data"
    description = ("The real-data ceiling: the accuracy classifier trained on as many real private-train images per "
                   "class as the synthetic set has (outside the guarantee: it reads the private train split)")
    applies_to = ("generator",)
    needs_private_train = True

    def settings(self, preset: str) -> dict:
        from dpbench.eval.downstream import CLASSIFIER_FITS, DOWNSTREAM_TRAINING

        return {"train_split": "private_train", "test_split": "private_test", "training": DOWNSTREAM_TRAINING[preset],
                "classifier_fits": CLASSIFIER_FITS[preset]}

    def evaluate(self, ctx: EvalContext) -> list[Metric]:
        from dpbench.eval.downstream import real_data_scores

        task = ctx.progress.task("real-data ceiling classifier", total=None)
        ceiling = real_data_scores(ctx.pair, ctx.private_train, ctx.private_test, ctx.sample_labels,
                                   preset=ctx.preset, seed=ctx.seed, device=ctx.device, cache_dir=ctx.cache_dir,
                                   progress=ctx.progress)
        task.close()
        return [Metric("accuracy_real_data", ceiling.mean, higher_is_better=True, reference=True,
                       extra=ceiling.extra())]


class MemorisationEvaluator(Evaluator):
    name = "memorisation"
    description = ("Copy check: the samples' near-copies of private training images (nearest-neighbour ratio < 1/3, "
                   "Gu et al. 2025) against the held-out test split, and Meehan et al.'s C_T (outside the guarantee)")
    applies_to = ("generator",)
    needs_private_train = True

    def settings(self, preset: str) -> dict:
        from dpbench.eval import memorisation as m

        return {"distance": "L2 on pixels in [0, 1]", "ratio_threshold": m.RATIO_THRESHOLD,
                "ct": {"version": "per-cell (k-means on private train)", "samples_per_cell": m.CT_SAMPLES_PER_CELL,
                       "max_cells": m.CT_MAX_CELLS, "min_cell_samples": m.CT_MIN_CELL_SAMPLES,
                       "kmeans_fit_images": m.KMEANS_FIT_IMAGES},
                "flag": {"ct_below": m.CT_FLAG_BELOW, "excess_at": m.EXCESS_FLAG_AT,
                         "excess_p_value": m.EXCESS_P_VALUE}}

    def evaluate(self, ctx: EvalContext) -> list[Metric]:
        from dpbench.eval.memorisation import copy_check

        task = ctx.progress.task("copy check", total=None)
        check = copy_check(ctx.samples, ctx.private_train.images, ctx.private_test.images, seed=ctx.seed % 2**32,
                           device=ctx.device)
        task.close()
        sizes = {"n_generated": check.n_samples, "n_train": check.n_train, "n_test": check.n_test}
        flag_extra = {"rule": "train fraction >= test fraction + 0.01 at McNemar p < 0.001, or C_T < -3",
                      "reason": check.reason}
        if check.flagged:  # the runner records it under `withheld`: the leaderboard publishes no grid of copies
            flag_extra["withhold_grid"] = f"copy check flagged: {check.reason}"
        return [
            Metric("copies_train_fraction", check.train_fraction, higher_is_better=False,
                   extra={**sizes, "excess_p_value": check.excess_p_value,
                          "median_distance_to_train": check.median_distance_to_train}),
            Metric("copies_test_fraction", check.test_fraction, higher_is_better=False, reference=True, extra=sizes),
            Metric("copies_ct", check.ct, higher_is_better=True,
                   extra={**sizes, "version": "per-cell", "cells": check.cells, "cells_used": check.ct_cells,
                          "median_test_distance_to_train": check.median_test_distance_to_train}),
            Metric("copies_flagged", float(check.flagged), higher_is_better=False, extra=flag_extra),
        ]
