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

        task = ctx.progress.task("FID/KID (Inception)", total=None)
        reference = ctx.private_test.images
        scores = fid_kid(ctx.samples, reference, cache_dir=ctx.cache_dir / "fidelity",
                         reference_cache_key=f"{ctx.pair.name}-private-test-{len(reference)}", device=ctx.device)
        task.close()
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
        from dpbench.eval.downstream import public_only_scores, real_data_scores, score_fits

        test = ctx.private_test
        task = ctx.progress.task("downstream classifier", total=None)
        if ctx.produces == "generator":  # the mean of N classifier fits, each fit's accuracy in the extra
            synthetic = ImageSet(ctx.samples, ctx.sample_labels)
            scores = score_fits(ctx.pair, synthetic, test, preset=ctx.preset, seed=ctx.seed, device=ctx.device)
            metrics = [Metric("accuracy", scores.mean, higher_is_better=True, extra=scores.extra())]
        else:
            predictions = ctx.artifact.predict(test.images)
            metrics = [Metric("accuracy", (predictions.cpu() == test.labels).float().mean().item(),
                              higher_is_better=True)]
        if ctx.produces == "generator" and ctx.private_train is not None:
            ceiling = real_data_scores(ctx.pair, ctx.private_train, test, ctx.sample_labels, preset=ctx.preset,
                                       seed=ctx.seed, device=ctx.device, cache_dir=ctx.cache_dir)
            metrics.append(Metric("accuracy_real_data", ceiling.mean, higher_is_better=True, reference=True,
                                  extra=ceiling.extra()))
        public = ctx.public_train
        if len(public) and int(public.labels.max()) < ctx.pair.num_classes:  # else public labels are another label space
            reference = public_only_scores(ctx.pair, public, test, preset=ctx.preset, seed=ctx.seed,
                                           device=ctx.device, cache_dir=ctx.cache_dir)
            metrics.append(Metric("accuracy_public_only", reference.mean, higher_is_better=True, reference=True,
                                  extra=reference.extra()))
        task.close()
        return metrics
