"""Inception pool3 features (torch-fidelity's 2015-12-05 Inception) of uint8 images, computed faster on a CPU.

The same network, weights and input pipeline as torch-fidelity's `inception-v3-compat` extractor, run three ways
cheaper (benchmarks/fid_speed.py measures each against the channels-last extractor dpbench used before):

- TensorFlow 1's bilinear resize to 299 as two small matrices (x ↦ A_h x A_wᵀ), built by applying torch-fidelity's
  own resize to the one-hot basis: the resize is linear and separable, so this is the same map.
- Each batch norm folded into its convolution (torch.nn.utils.fusion.fuse_conv_bn_eval: one pass over the
  activations instead of two), the network in channels-last memory format, under torch.inference_mode. A
  TorchScript-frozen graph (torch.jit.freeze) did the same folding but measured slower here (1.38 against 2.04
  over the old path, benchmarks/RESULTS.md).
- Grayscale images are resized once, not once per repeated channel.

Features agree with torch-fidelity's extractor to ~1e-5 relative (tests/test_fid.py checks 1e-4).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

INPUT_SIZE = 299
# Names the features' computation. The reference features' cache key includes it: a change here re-extracts.
FEATURES_VERSION = "inception-2015-12-05-pool3/tf1-bilinear-matrix/bn-folded-channels-last/v1"
_LAYERS = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
           "MaxPool_2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
           "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "AvgPool")


def tf1_resize_matrix(size_in: int, size_out: int = INPUT_SIZE) -> torch.Tensor:
    """(size_out, size_in): row i holds the weights torch-fidelity's TF1 bilinear resize gives output pixel i."""
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    basis = torch.zeros(size_in, 1, size_in, 2, dtype=torch.float64)
    basis[torch.arange(size_in), 0, torch.arange(size_in)] = 1
    resized = interpolate_bilinear_2d_like_tensorflow1x(basis, size=(size_out, 2), align_corners=False)
    return resized[:, 0, :, 0].T.contiguous()


def fold_batch_norms(network: nn.Module) -> nn.Module:
    """Every conv + batch norm pair of torch-fidelity's BasicConv2d blocks as one conv with a bias (eval mode)."""
    for block in network.modules():
        if isinstance(getattr(block, "conv", None), nn.Conv2d) and isinstance(getattr(block, "bn", None),
                                                                              nn.BatchNorm2d):
            block.conv, block.bn = fuse_conv_bn_eval(block.conv, block.bn), nn.Identity()
    return network


class _Pool3(nn.Module):
    """torch-fidelity's Inception from the normalised 299x299 input to the 2048 pool3 features."""

    def __init__(self, extractor: nn.Module) -> None:
        super().__init__()
        for name in _LAYERS:
            setattr(self, name, getattr(extractor, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in _LAYERS:
            x = getattr(self, name)(x)
        return torch.flatten(x, 1)


class InceptionFeatures:
    """Callable: uint8 (N, 1 or 3, H, W) → float32 (N, 2048), in batches, advancing a progress task per batch."""

    def __init__(self, weights: Path, device: torch.device | str = "cpu", batch_size: int = 64) -> None:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.device, self.batch_size = torch.device(device), batch_size
        extractor = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                feature_extractor_weights_path=str(weights))
        self.network = fold_batch_norms(_Pool3(extractor).eval()).to(self.device, memory_format=torch.channels_last)
        self._resize: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def _matrices(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        if (height, width) not in self._resize:
            self._resize[(height, width)] = (tf1_resize_matrix(height).float().to(self.device),
                                             tf1_resize_matrix(width).float().T.contiguous().to(self.device))
        return self._resize[(height, width)]

    def normalised_input(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, 299, 299) float in [-1, 1): torch-fidelity's resize of the uint8 images, then (x - 128) / 128."""
        rows, cols = self._matrices(images.shape[2], images.shape[3])
        x = rows @ images.to(self.device, torch.float32) @ cols
        x = (x - 128) / 128
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    def __call__(self, images: torch.Tensor, task=None) -> torch.Tensor:
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = images[start:start + self.batch_size]
                x = self.normalised_input(batch).contiguous(memory_format=torch.channels_last)
                out.append(self.network(x).float().cpu())
                if task is not None:
                    task.advance(len(batch))
        return torch.cat(out) if out else torch.zeros(0, 2048)
