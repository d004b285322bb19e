"""One run, stage by stage: the runner, run records, progress."""
