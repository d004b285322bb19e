"""Evaluation helpers: generation metrics (FID/KID) and run costs."""
