"""Time a DP-SGD step against the non-private step of the same scope, per per-example gradient implementation.

For each (method, K, implementation) one subprocess alternates DP and non-private steps (after one warm-up of
each) and reports the median of `--steps` repeats of each, so a time ratio comes from one process under the same
load. Peak memory (CUDA max allocated, or peak RSS on a CPU) is measured in subprocesses of their own, one per
(method, K, implementation, mode); on a CPU the RSS includes the process's fixed cost (torch, the model), so
`step_memory_ratio` compares the peak above the RSS before the first step as well.

    python benchmarks/dp_step.py --k 1 4 --json                   # every method and implementation, K = 1 and 4
    python benchmarks/dp_step.py --methods dp-loda --impl ghost vmap --steps 7
    python benchmarks/dp_step.py --methods dp-loda dp-diffusion --pixel-width 64 --impl ghost
    python benchmarks/dp_step.py --profile benchmarks/profiles     # top ops of each scope's steps
    python benchmarks/dp_step.py --head-to-head --methods dp-loda dp-diffusion --steps 9 --json

`--head-to-head` times the listed methods' steps against each other in one process (the engine's own
implementation choice, K = the first `--k`): every method's DP and non-private steps alternate in each repeat, so
"DP-LoDA's step against DP full's" is not skewed by load that differs between two subprocesses.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


# method -> (backbone, trainable scope); dp-sgd is the classifier baseline.
METHODS = {
    "dp-loda": ("pixel", "loda"), "dp-diffusion": ("pixel", "full"),
    "dp-ldm": ("latent", "attention"), "dp-lora": ("latent", "lora"), "dp-sgd": ("classifier", "full"),
}


def _build(method: str, device, pixel_width: int | None = None):
    """The model each method trains, at the default preset's size on the embedded pair (28x28, 10 classes)."""
    from dpbench.builtins.backbones import LATENT_WIDTH, PIXEL_WIDTH
    from dpbench.builtins.scopes import AttentionScope, FullScope, LoDAScope, LoRAScope
    from dpbench.finetune.method import DiffusionSettings
    from dpbench.models.autoencoder import AutoencoderConfig
    from dpbench.models.classifiers import build_classifier
    from dpbench.models.unet import ClassConditionalUNet, UNetConfig

    backbone, scope = METHODS[method]
    if backbone == "classifier":
        return build_classifier("cnn", 1, 28, 10).to(device), (1, 28, 28)
    if backbone == "pixel":  # as dpbench.builtins.backbones.PixelBackbone builds it
        width = pixel_width or PIXEL_WIDTH["default"]
        model = ClassConditionalUNet(UNetConfig.for_images(28, 1, 10, base_channels=width))
        shape = (1, 28, 28)
    else:  # as dpbench.builtins.backbones.LatentBackbone builds it
        ae = AutoencoderConfig(28, 1)
        size = ae.latent_size()
        model = ClassConditionalUNet(UNetConfig(size, ae.latent_channels, 10, base_channels=LATENT_WIDTH["default"],
                                                channel_mults=(1, 2), attention_resolutions=(size, (size + 1) // 2)))
        shape = (ae.latent_channels, size, size)
    scopes = {s.name: s for s in (FullScope(), AttentionScope(), LoRAScope(), LoDAScope())}
    scopes[scope].apply(model, DiffusionSettings(backbone=backbone, scope=scope))  # the scope's default knobs
    return model.to(device), shape


def _steps(method: str, batch: int, k: int, implementation: str, device, pixel_width: int | None):
    """(dp_step, non_private_step, trainable count, K used) for one method on a fixed batch."""
    import torch
    import torch.nn.functional as F

    from dpbench.finetune.classifier import classifier_example_loss, pass_through
    from dpbench.finetune.diffusion_finetune import diffusion_batch_maker, diffusion_example_loss
    from dpbench.models.diffusion import DiffusionSchedule, diffusion_loss
    from dpbench.privacy.engine import DPSettings, PrivateTrainer

    torch.manual_seed(0)
    model, shape = _build(method, device, pixel_width)
    classifier = METHODS[method][0] == "classifier"
    schedule = DiffusionSchedule()
    x_all = torch.rand((batch, *shape)) * 2 - 1
    labels = torch.arange(batch) % 10
    if classifier:
        k = 1
        loss_fn, make_batch = classifier_example_loss, pass_through
    else:
        loss_fn = diffusion_example_loss(schedule)
        make_batch = diffusion_batch_maker(schedule, k, 0.1, 10)
    # sample rate 1 (expected batch = n): every step sees the whole batch, through the engine's chunking
    settings = DPSettings(expected_batch_size=batch, steps=10 ** 6, max_grad_norm=1.0, noise_multiplicity=k,
                          physical_batch_size=batch, per_example=implementation)
    engine = PrivateTrainer(model, loss_fn, make_batch, settings, private_x=x_all, private_y=labels, epsilon=10.0,
                            delta=1e-5, device=device, seed=0)
    params = list(engine.trainable.values())
    optimizer = torch.optim.Adam(params, lr=1e-4)
    examples = {"x": x_all.to(device), "y": labels.to(device)}
    generator = torch.Generator(device=device).manual_seed(0)

    def non_private_step():
        """The same K draws per example, one ordinary backward over the whole batch."""
        example = make_batch(examples, generator)
        if classifier:
            loss = F.cross_entropy(model(example["x"]), example["y"])
        else:
            b, shp = example["x0"].shape[0], example["x0"].shape[1:]
            x0 = example["x0"].unsqueeze(1).expand(b, k, *shp).reshape(b * k, *shp)
            loss = diffusion_loss(model, x0, example["t"].reshape(-1), example["noise"].reshape(b * k, *shp),
                                  example["y"].reshape(-1), schedule).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def dp_step():
        engine.step(optimizer)

    return dp_step, non_private_step, sum(p.numel() for p in params), k


def _timed(fn, device) -> float:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def time_one(method: str, batch: int, repeats: int, k: int, implementation: str, device_name: str,
             pixel_width: int | None) -> dict:
    """Median seconds of `repeats` DP and non-private steps, alternated in this process after a warm-up of each."""
    import torch

    device = torch.device(device_name)
    dp_step, non_private_step, trainable, k = _steps(method, batch, k, implementation, device, pixel_width)
    dp_step(), non_private_step()
    dp_times, np_times = [], []
    for _ in range(repeats):
        dp_times.append(_timed(dp_step, device))
        np_times.append(_timed(non_private_step, device))
    dp, np_ = statistics.median(dp_times), statistics.median(np_times)
    return {"method": method, "scope": "/".join(METHODS[method]), "k": k, "batch": batch,
            "implementation": implementation, "pixel_width": pixel_width, "trainable_parameters": trainable,
            "threads": torch.get_num_threads(), "repeats": repeats, "dp_seconds": dp, "non_private_seconds": np_,
            "dp_all": dp_times, "non_private_all": np_times, "time_ratio": dp / np_}


def head_to_head(methods: list[str], batch: int, repeats: int, k: int, device_name: str,
                 pixel_width: int | None) -> list[dict]:
    """Median seconds of each method's DP and non-private steps, all alternated in this process; ratios are
    against the first method's step of the same mode."""
    import torch

    device = torch.device(device_name)
    steps = {m: _steps(m, batch, k, "auto", device, pixel_width) for m in methods}
    seconds = {(m, mode): [] for m in methods for mode in ("dp", "non_private")}
    for dp_step, non_private_step, _, _ in steps.values():
        dp_step(), non_private_step()
    for _ in range(repeats):
        for m, (dp_step, non_private_step, _, _) in steps.items():
            seconds[m, "dp"].append(_timed(dp_step, device))
            seconds[m, "non_private"].append(_timed(non_private_step, device))
    median = {key: statistics.median(v) for key, v in seconds.items()}
    return [{"method": m, "scope": "/".join(METHODS[m]), "k": steps[m][3], "mode": mode, "implementation": "auto",
             "batch": batch, "pixel_width": pixel_width, "threads": torch.get_num_threads(), "repeats": repeats,
             "seconds_per_step": median[m, mode], "time_ratio": median[m, mode] / median[m, "non_private"],
             f"against_{methods[0]}": median[m, mode] / median[methods[0], mode], "all_seconds": seconds[m, mode],
             "trainable_parameters": steps[m][2]}
            for m in methods for mode in ("non_private", "dp")]


def _current_rss_mb() -> float:
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_one(method: str, mode: str, batch: int, k: int, implementation: str, device_name: str,
               pixel_width: int | None) -> dict:
    """Peak memory of one mode's steps in a process of its own (two steps: a warm-up and one more)."""
    import torch

    from dpbench.eval.cost import peak_memory, reset_peak_memory

    device = torch.device(device_name)
    dp_step, non_private_step, _, _ = _steps(method, batch, k, implementation, device, pixel_width)
    step = dp_step if mode == "dp" else non_private_step
    before = _current_rss_mb() if device.type == "cpu" else 0.0
    reset_peak_memory(device)
    step()
    step()
    peak = peak_memory(device)
    return {**peak, "step_memory_mb": peak["peak_memory_mb"] - before}


def profile_one(method: str, batch: int, implementation: str, device_name: str, out_dir: str) -> str:
    """torch.profiler's top operators (self CPU time) of one DP and one non-private step, K = 1."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    device = torch.device(device_name)
    dp_step, non_private_step, trainable, _ = _steps(method, batch, 1, implementation, device, None)
    dp_step(), non_private_step()
    lines = [f"# {method} ({'/'.join(METHODS[method])}), batch {batch}, K = 1, implementation {implementation}, "
             f"{torch.get_num_threads()} threads, {trainable:,} trainable parameters",
             "# python benchmarks/dp_step.py --profile benchmarks/profiles", ""]
    for mode, fn in (("dp", dp_step), ("non_private", non_private_step)):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            seconds = _timed(fn, device)
        lines += [f"## {mode} step: {seconds:.3f} s", prof.key_averages().table(sort_by="self_cpu_time_total",
                                                                               row_limit=15), ""]
    from pathlib import Path

    path = Path(out_dir) / f"{METHODS[method][1] if method != 'dp-sgd' else 'classifier'}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return str(path)


def _sub(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from dpbench.privacy.per_example import IMPLEMENTATIONS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="timed repeats of each mode (the median is reported)")
    parser.add_argument("--k", type=int, nargs="+", default=[1])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--impl", nargs="+", default=list(IMPLEMENTATIONS), choices=list(IMPLEMENTATIONS))
    parser.add_argument("--pixel-width", type=int, default=None, help="base width of the pixel U-Net")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profile", metavar="DIR", help="write each method's top operators to DIR/<scope>.txt")
    parser.add_argument("--head-to-head", action="store_true",
                        help="time the methods' steps against each other in one process (K = the first --k)")
    parser.add_argument("--time-one", nargs=3, metavar=("METHOD", "K", "IMPL"), help=argparse.SUPPRESS)
    parser.add_argument("--memory-one", nargs=4, metavar=("METHOD", "MODE", "K", "IMPL"), help=argparse.SUPPRESS)
    parser.add_argument("--profile-one", nargs=2, metavar=("METHOD", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    width = args.pixel_width
    if args.time_one:
        method, k, impl = args.time_one
        print(json.dumps(time_one(method, args.batch, args.steps, int(k), impl, args.device, width)))
        return
    if args.memory_one:
        method, mode, k, impl = args.memory_one
        print(json.dumps(memory_one(method, mode, args.batch, int(k), impl, args.device, width)))
        return
    if args.profile_one:
        print(json.dumps(profile_one(*args.profile_one[:1], args.batch, args.profile_one[1], args.device, args.profile)))
        return
    if args.head_to_head:
        rows = head_to_head(args.methods, args.batch, args.steps, args.k[0], args.device, width)
        if args.json:
            print(json.dumps(rows, indent=2))
            return
        first = args.methods[0]
        print(f"| method | backbone/scope | mode | s/step (batch {args.batch}, median of {args.steps}) | × non-private "
              f"| × {first} |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['method']} | {r['scope']} | {r['mode']} | {r['seconds_per_step']:.3f} | {r['time_ratio']:.2f} "
                  f"| {r[f'against_{first}']:.2f} |")
        return
    common = ["--batch", str(args.batch), "--device", args.device, *(["--pixel-width", str(width)] if width else [])]
    if args.profile:
        from dpbench.privacy.per_example.choice import TABLE

        for method in args.methods:
            scope = "classifier" if method == "dp-sgd" else METHODS[method][1]
            print(_sub(["--profile-one", method, TABLE[scope], "--profile", args.profile, *common]))
        return
    rows = []
    for method in args.methods:
        for k in ([1] if METHODS[method][0] == "classifier" else args.k):
            base_memory = None
            for impl in args.impl:
                timing = _sub(["--time-one", method, str(k), impl, "--steps", str(args.steps), *common])
                if base_memory is None:
                    base_memory = _sub(["--memory-one", method, "non_private", str(k), impl, *common])
                memory = _sub(["--memory-one", method, "dp", str(k), impl, *common])
                for mode, seconds, mem in (("non_private", timing["non_private_seconds"], base_memory),
                                           ("dp", timing["dp_seconds"], memory)):
                    rows.append({"method": method, "scope": timing["scope"], "k": timing["k"], "mode": mode,
                                 "implementation": impl, "batch": args.batch, "pixel_width": width,
                                 "seconds_per_step": seconds,
                                 "time_ratio": seconds / timing["non_private_seconds"],
                                 "memory_ratio": mem["peak_memory_mb"] / base_memory["peak_memory_mb"],
                                 "step_memory_ratio": mem["step_memory_mb"] / max(base_memory["step_memory_mb"], 1e-9),
                                 "peak_memory_mb": mem["peak_memory_mb"], "peak_memory_kind": mem["peak_memory_kind"],
                                 "step_memory_mb": mem["step_memory_mb"], "repeats": args.steps,
                                 "all_seconds": timing["dp_all" if mode == "dp" else "non_private_all"],
                                 "trainable_parameters": timing["trainable_parameters"]})
                print(json.dumps(rows[-2:]), file=sys.stderr, flush=True)  # progress, and rows kept if a later one fails
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"| method | backbone/scope | K | implementation | mode | s/step (batch {args.batch}, median of {args.steps}) "
          f"| × non-private | peak MB ({rows[0]['peak_memory_kind']}) | × non-private | step MB × non-private | trainable |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['scope']} | {r['k']} | {r['implementation']} | {r['mode']} | {r['seconds_per_step']:.3f} "
              f"| {r['time_ratio']:.2f} | {r['peak_memory_mb']:.0f} | {r['memory_ratio']:.2f} | {r['step_memory_ratio']:.2f} "
              f"| {r['trainable_parameters']:,} |")


if __name__ == "__main__":
    main()
