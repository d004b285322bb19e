"""The core's evaluators: FID/KID and downstream accuracy (with the public-only reference)."""
import dpbench
from dpbench.eval.evaluators import AccuracyEvaluator, FidKidEvaluator


@dpbench.hookimpl
def dpbench_register_evaluators(register):
    register(FidKidEvaluator())
    register(AccuracyEvaluator())
