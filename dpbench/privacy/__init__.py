"""Privacy accounting (Opacus) and the core's one DP-SGD engine."""
