"""Per-stage cost of the `paper` preset at each real pair's image size, extrapolated to a full run.

For every method x pair it times a few steps of each stage on random tensors of the pair's shape (no data
needed) with the paper preset's models and batch sizes, then multiplies by the number of steps a full paper
run takes (official split sizes, the preset's epochs, synthetic-set size):
pre-training (public; the latent backbone's autoencoder and the pixel backbone's augmentation are not
timed), DP fine-tuning, DDIM sampling, FID/KID, downstream training.
Meant for a GPU (`--device cuda`, where peak memory is reset per stage); on a CPU, peak RSS only grows, and
`--pairs`/`--methods` with a small `--chunk` just check that it runs. The DP step is timed on `--chunk`
examples (times K draws) and scaled linearly to the expected batch, which assumes the GPU is saturated by
the chunk; pick the largest chunk that fits.

    python benchmarks/paper_costs.py --device cuda                 # the full table, markdown
    python benchmarks/paper_costs.py --device cpu --pairs svhn-mnist --methods dp-lora --chunk 2 --json
    python benchmarks/paper_costs.py --device cuda --no-fid        # where no Inception weights can be had
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from bench_timing import seconds_per_call

# Official split sizes of the private sets (train, test) behind each pair.
PRIVATE_SIZES = {"svhn-mnist": (60_000, 10_000), "imagenet32-cifar10": (50_000, 10_000),
                 "imagenet32-cifar10-1pct": (500, 10_000), "imagenet-celeba": (162_770, 19_962),
                 "imagenet-celeba-64": (162_770, 19_962)}
GENERATORS = ("dp-loda", "dp-lora", "dp-ldm", "dp-diffusion")


def _timed(fn, repeats: int, device: torch.device) -> tuple[float, float, int]:
    """Seconds per call, the peak memory (MB) of those calls, and the FLOPs of one more call (torch's counter:
    matmuls and convolutions, forward and backward, which is where a U-Net's time goes)."""
    from torch.utils.flop_counter import FlopCounterMode

    from dpbench.eval.cost import peak_memory

    seconds = seconds_per_call(fn, repeats, device)
    mb = peak_memory(device)["peak_memory_mb"]
    with FlopCounterMode(display=False) as counter:
        fn()
    return seconds, mb, counter.get_total_flops()


def _unet_and_shape(pair, backbone: str):
    """The paper preset's U-Net, built as dpbench.builtins.backbones builds it (without pre-training)."""
    from dpbench.builtins.backbones import LATENT_WIDTH, PIXEL_WIDTH
    from dpbench.models.autoencoder import AutoencoderConfig
    from dpbench.models.unet import ClassConditionalUNet, UNetConfig

    if backbone == "pixel":
        config = UNetConfig.for_images(pair.image_size, pair.channels, pair.num_classes,
                                       base_channels=PIXEL_WIDTH["paper"])
        return ClassConditionalUNet(config), (pair.channels, pair.image_size, pair.image_size)
    if backbone != "latent":
        raise ValueError(f"no cost model for backbone '{backbone}'")
    ae = AutoencoderConfig(pair.image_size, pair.channels)
    size = ae.latent_size()
    config = UNetConfig(size, ae.latent_channels, pair.num_classes, base_channels=LATENT_WIDTH["paper"],
                        channel_mults=(1, 2), attention_resolutions=(size, (size + 1) // 2))
    return ClassConditionalUNet(config), (ae.latent_channels, size, size)


def _fid_seconds_per_image(pair, device: torch.device, n: int, cache_dir: Path) -> tuple[float, float]:
    """The real FID/KID path (torch-fidelity, Inception) on n random images against n others."""
    from dpbench.eval.cost import peak_memory, reset_peak_memory
    from dpbench.eval.fid import fid_kid

    gen = torch.Generator().manual_seed(0)
    shape = (n, pair.channels, pair.image_size, pair.image_size)
    a, b = (torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8) for _ in range(2))
    from torch.utils.flop_counter import FlopCounterMode

    fid_kid(a[:8], b[:8], cache_dir=cache_dir, device=device)  # warm-up: weights resolved, extractor built
    reset_peak_memory(device)
    start = time.perf_counter()
    fid_kid(a, b, cache_dir=cache_dir, device=device)
    seconds = (time.perf_counter() - start) / (2 * n)
    mb = peak_memory(device)["peak_memory_mb"]
    with FlopCounterMode(display=False) as counter:
        fid_kid(a[:8], b[:8], cache_dir=cache_dir, device=device)
    return seconds, mb, counter.get_total_flops() / 16


def measure(method_name: str, pair, settings, registry, device: torch.device, chunk: int, repeats: int,
            cache_dir: Path, fid: bool = True) -> dict:
    from dpbench.builtins.backbones import LATENT_PRETRAIN_PRESETS, PRETRAIN_PRESETS
    from dpbench.eval.downstream import CLASSIFIER_FITS, DOWNSTREAM_TRAINING
    from dpbench.finetune.classifier import classifier_example_loss, pass_through
    from dpbench.finetune.diffusion_finetune import diffusion_batch_maker, diffusion_example_loss
    from dpbench.finetune.method import planned_steps
    from dpbench.models.classifiers import build_classifier
    from dpbench.models.diffusion import DiffusionSchedule, ddim_sample, diffusion_loss
    from dpbench.privacy.engine import DPSettings, PrivateTrainer

    n_train, n_test = PRIVATE_SIZES[pair.name]
    stages, per_step = {}, {}
    n_samples = int(getattr(settings, "samples_per_class", 0)) * pair.num_classes
    shape = (pair.channels, pair.image_size, pair.image_size)

    def engine(model, loss, make_batch, data, k=1):
        """The harness's DP engine over `chunk` random examples at sample rate 1 (every step sees them all)."""
        dp = DPSettings(expected_batch_size=chunk, steps=100, max_grad_norm=1.0, noise_multiplicity=k,
                        physical_batch_size=chunk * k)
        return PrivateTrainer(model, loss, make_batch, dp, private_x=data,
                              private_y=torch.arange(chunk) % pair.num_classes, epsilon=10.0, delta=1e-5,
                              device=device, seed=0)

    if method_name in GENERATORS:
        schedule = DiffusionSchedule()
        unet, shape = _unet_and_shape(pair, settings.backbone)
        unet = unet.to(device)
        pre = (LATENT_PRETRAIN_PRESETS if settings.backbone == "latent" else PRETRAIN_PRESETS)["paper"]
        opt = torch.optim.Adam(unet.parameters(), lr=1e-4)
        x = torch.rand((pre.batch_size, *shape), device=device) * 2 - 1
        y = torch.randint(0, pair.num_classes, (pre.batch_size,), device=device)

        def pretrain_step():
            t = torch.randint(0, 1000, (pre.batch_size,), device=device)
            diffusion_loss(unet, x, t, torch.randn_like(x), y, schedule).mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        sec, mb, flops = _timed(pretrain_step, repeats, device)
        stages["pretrain"] = (sec * pre.steps, mb, flops * pre.steps)
        per_step["pretrain"] = {"seconds": sec, "batch": pre.batch_size}

        registry.scope(settings.scope).apply(unet, settings.scope_settings)
        k = settings.noise_multiplicity
        make_batch = diffusion_batch_maker(schedule, k, settings.p_uncond, pair.num_classes)
        trainer = engine(unet, diffusion_example_loss(schedule), make_batch, torch.rand((chunk, *shape)) * 2 - 1, k)
        ft_opt = torch.optim.Adam(list(trainer.trainable.values()), lr=1e-4)
        sec, mb, flops = _timed(lambda: trainer.step(ft_opt), repeats, device)
        steps = planned_steps(settings, n_train)
        scale = settings.batch_size / chunk * steps
        stages["dp_finetune"] = (sec * scale, mb, flops * scale)
        per_step["dp_finetune"] = {"seconds": sec, "batch": chunk, "k": k, "paper_batch": settings.batch_size,
                                   "paper_steps": steps}

        labels = torch.arange(min(chunk * 8, n_samples)) % pair.num_classes
        sec, mb, flops = _timed(lambda: ddim_sample(unet.eval(), labels, shape, schedule, steps=settings.ddim_steps,
                                                    eta=settings.ddim_eta, batch_size=len(labels)), 1, device)
        stages["sample"] = (sec / len(labels) * n_samples, mb, flops / len(labels) * n_samples)
    else:
        model = build_classifier(pair.classifier, pair.channels, pair.image_size, pair.num_classes).to(device)
        trainer = engine(model, classifier_example_loss, pass_through, torch.rand((chunk, *shape)) * 2 - 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        sec, mb, flops = _timed(lambda: trainer.step(opt), repeats, device)
        scale = settings.batch_size / chunk * settings.steps
        stages["dp_finetune"] = (sec * scale, mb, flops * scale)
        per_step["dp_finetune"] = {"seconds": sec, "batch": chunk, "k": 1, "paper_batch": settings.batch_size,
                                   "paper_steps": settings.steps}

    if n_samples:  # generators only: a classifier has no samples to score
        if fid:
            per_image, mb, flops = _fid_seconds_per_image(pair, device, n=max(16, min(64, chunk * 8)),
                                                          cache_dir=cache_dir)
            stages["fid"] = (per_image * (n_samples + n_test), mb, flops * (n_samples + n_test))
        train = DOWNSTREAM_TRAINING["paper"]
        clf = build_classifier(pair.classifier, pair.channels, pair.image_size, pair.num_classes).to(device)
        copt = torch.optim.Adam(clf.parameters(), lr=1e-3)
        xb = torch.rand((train["batch_size"], pair.channels, pair.image_size, pair.image_size), device=device)
        yb = torch.randint(0, pair.num_classes, (train["batch_size"],), device=device)

        def clf_step():
            torch.nn.functional.cross_entropy(clf(xb), yb).backward()
            copt.step()
            copt.zero_grad(set_to_none=True)

        sec, mb, flops = _timed(clf_step, repeats, device)
        # the accuracy evaluator's fits on the synthetic set and the real-data ceiling's on as many real images
        steps = 2 * CLASSIFIER_FITS["paper"] * train["epochs"] * math.ceil(n_samples / train["batch_size"])
        stages["downstream"] = (sec * steps, mb, flops * steps)
    return {"method": method_name, "pair": pair.name, "device": str(device), "per_step": per_step,
            "hours": {k: v[0] / 3600 for k, v in stages.items()}, "peak_mb": {k: v[1] for k, v in stages.items()},
            "pflop": {k: v[2] / 1e15 for k, v in stages.items()},
            "total_hours": sum(v[0] for v in stages.values()) / 3600,
            "total_pflop": sum(v[2] for v in stages.values()) / 1e15}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--pairs", nargs="+", default=list(PRIVATE_SIZES))
    parser.add_argument("--methods", nargs="+", default=list(GENERATORS) + ["dp-sgd"])
    parser.add_argument("--chunk", type=int, default=32, help="examples per timed DP step (physical batch)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=Path(".dpbench-cache"), help="Inception weights live here")
    parser.add_argument("--no-fid", action="store_true",
                        help="leave out the FID/KID stage (where no Inception weights can be had); totals exclude it")
    parser.add_argument("--gpu-tflops", type=float, default=25.0,
                        help="sustained TFLOP/s of the GPU the hours are stated for (FLOPs / this rate)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from dpbench.api.registry import load_registry
    from dpbench.run.resolve import method_settings

    registry = load_registry()
    device = torch.device(args.device)
    rows = []
    for pair_name in args.pairs:
        pair = registry.pair(pair_name)
        for method_name in args.methods:
            method = registry.method(method_name)
            settings = method_settings(registry, method, "paper", pair, {})  # as a run settles them
            rows.append(measure(method_name, pair, settings, registry, device, args.chunk, args.repeats,
                                args.cache_dir, fid=not args.no_fid))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    stages = ["pretrain", "dp_finetune", "sample", "fid", "downstream"]
    print(f"Hours on {args.device} as measured (peak MB), and PFLOP with the hours they take at a sustained "
          f"{args.gpu_tflops:g} TFLOP/s.\n")
    print(f"| method | pair | {' | '.join(s + ' h (peak MB)' for s in stages)} | total h | total PFLOP | "
          f"h at {args.gpu_tflops:g} TFLOP/s |")
    print("|---|---|" + "---|" * (len(stages) + 3))
    for r in rows:
        cells = [f"{r['hours'][s]:.2f} ({r['peak_mb'][s]:.0f})" if s in r["hours"] else "–" for s in stages]
        at_rate = r["total_pflop"] * 1e15 / (args.gpu_tflops * 1e12) / 3600
        print(f"| {r['method']} | {r['pair']} | {' | '.join(cells)} | {r['total_hours']:.1f} | "
              f"{r['total_pflop']:.1f} | {at_rate:.1f} |")
    if args.no_fid:
        print("\nFID/KID not measured (--no-fid): the totals leave it out.")


if __name__ == "__main__":
    main()
