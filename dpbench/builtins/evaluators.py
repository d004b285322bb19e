"""The core's evaluators: FID/KID, downstream accuracy (with the public-only reference), the real-data ceiling and
the copy check (the last two read the private train split: their figures are recorded outside the guarantee)."""
import dpbench
from dpbench.eval.evaluators import AccuracyEvaluator, FidKidEvaluator, MemorisationEvaluator, RealDataCeilingEvaluator


@dpbench.hookimpl
def dpbench_register_evaluators(register):
    register(FidKidEvaluator())
    register(AccuracyEvaluator())
    register(RealDataCeilingEvaluator())
    register(MemorisationEvaluator())
