"""Fine-tuning under DP: the shared diffusion-method body and the DP-SGD classifier."""
