"""Time the DP step of one global batch as 1 process x T threads against N processes x T/N threads (torchrun,
gloo on the CPU): the same examples, clipped, all-reduced, noised once. The dp-loda model at the default preset's
size (pixel U-Net, LoDA scope) with its default batch of 256, every example in every step (sample rate 1), so
both layouts compute exactly the same per-example gradients.

    python benchmarks/distributed_step.py                       # 1 x 2 threads against 2 x 1 thread
    python benchmarks/distributed_step.py --batch 128 --repeats 7 --steps 3 --single-thread

Each repeat times `steps` steps after a warm-up; the figure is the median over repeats of the seconds per step.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def measure(batch: int, steps: int, repeats: int, threads: int, per_example: str | None) -> dict:
    """Seconds per DP step on this process's world (a single process, or the rank torchrun made it)."""
    import torch
    import torch.distributed as dist

    from dp_step import _build
    from dpbench.finetune.diffusion_finetune import diffusion_batch_maker, diffusion_example_loss
    from dpbench.models.diffusion import DiffusionSchedule
    from dpbench.privacy.distributed import join_launched_world
    from dpbench.privacy.engine import DPSettings, PrivateTrainer

    torch.set_num_threads(threads)
    world, device = join_launched_world(torch.device("cpu"))
    torch.manual_seed(0)
    model, shape = _build("dp-loda", device)
    schedule = DiffusionSchedule()
    x_all = torch.rand((batch, *shape)) * 2 - 1
    labels = torch.arange(batch) % 10
    # the engine's default chunk of 64 examples per vmap in both layouts: the same work per chunk
    chosen = {"per_example": per_example} if per_example else {}  # default: the engine's own choice
    settings = DPSettings(expected_batch_size=batch, steps=10 ** 6, max_grad_norm=1.0, physical_batch_size=64, **chosen)
    engine = PrivateTrainer(model, diffusion_example_loss(schedule), diffusion_batch_maker(schedule, 1, 0.1, 10),
                            settings, private_x=x_all, private_y=labels, epsilon=10.0, delta=1e-5, device=device,
                            seed=0, world=world)
    optimizer = torch.optim.Adam(list(engine.trainable.values()), lr=1e-4)
    engine.step(optimizer)  # warm-up
    times = []
    for _ in range(repeats):
        if world.is_distributed:
            dist.barrier()
        start = time.perf_counter()
        for _ in range(steps):
            engine.step(optimizer)
        times.append((time.perf_counter() - start) / steps)
    return {"world_size": world.size, "threads_per_process": threads, "batch": batch, "steps": steps,
            "repeats": repeats, "median_s": statistics.median(times), "all_s": times,
            "global_batch_seen": engine.batch_sizes[-1],
            "per_example": getattr(engine.plan, "per_example", "vmap")}  # the engine's per-example implementation


def run_layout(nproc: int, threads: int, args) -> dict:
    one = ["--one", str(threads), "--batch", str(args.batch), "--steps", str(args.steps), "--repeats", str(args.repeats),
           *(["--per-example", args.per_example] if args.per_example else [])]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(Path(__file__).parent)}
    if nproc == 1:
        command = [sys.executable, __file__, *one]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                   __file__, *one]
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256, help="global batch (every example, every step)")
    parser.add_argument("--steps", type=int, default=2, help="steps per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cores", type=int, default=2, help="threads of the 1-process layout; N processes x 1 thread")
    parser.add_argument("--per-example", default=None, help="the engine's per-example implementation (default: its choice)")
    parser.add_argument("--single-thread", action="store_true", help="also time 1 process x 1 thread")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one", type=int, metavar="THREADS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        result = measure(args.batch, args.steps, args.repeats, args.one, args.per_example)
        if int(os.environ.get("RANK", "0")) == 0:
            print(json.dumps(result))
        return
    rows = [run_layout(1, args.cores, args), run_layout(args.cores, 1, args)]
    if args.single_thread:
        rows.append(run_layout(1, 1, args))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"| layout | global batch | per-example | s/step (median of {args.repeats} x {args.steps} steps) | all repeats |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['world_size']} process x {r['threads_per_process']} thread | {r['batch']} | {r['per_example']} | "
              f"{r['median_s']:.3f} | " + ", ".join(f"{s:.3f}" for s in r["all_s"]) + " |")


if __name__ == "__main__":
    main()
