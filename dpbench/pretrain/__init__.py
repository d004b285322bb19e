"""Public pre-training: backbones that never see private data, and their cache."""
