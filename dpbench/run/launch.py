"""A run with `nproc` > 1 (`dpbench run --nproc N`, or a sweep cell with several GPUs): the same run as `dpbench run`
again, N times under torchrun (torch.distributed.run) on this node. Rank 0 prints the record; it is read back here."""
from __future__ import annotations

import json
import math
import subprocess
import sys

from dpbench.run.records import RECORD_NAME, run_dir
from dpbench.run.request import run_caps


def request_arguments(request) -> list[str]:
    """`dpbench run` arguments for a RunRequest (without its nproc)."""
    argv = ["run", "--method", request.method, "--pair", request.pair, "--eps", _number(request.epsilon),
            "--delta", _number(request.delta), "--seed", str(request.seed), "--preset", request.preset,
            "--out", str(request.out), "--device", request.device, "--cache-dir", str(request.cache_dir),
            "--rng", request.rng, "--checkpoint-every", str(request.checkpoint_every), "--json"]
    if request.data_root is not None:
        argv += ["--data-root", str(request.data_root)]
    for name in request.evaluators or []:
        argv += ["--evaluator", name]
    for name, cap in run_caps(request).items():  # max_steps -> --max-steps
        argv += [f"--{name.replace('_', '-')}", str(cap)]
    for key, value in request.overrides.items():
        argv += ["--set", f"{key}={_text(value)}"]
    for flag, on in (("--rebuild-backbone", request.rebuild_backbone),
                     ("--allow-large-delta", request.allow_large_delta), ("--resume", request.resume)):
        argv += [flag] if on else []
    return argv


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """`python -m dpbench ARGV` as `nproc` processes on this node."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "dpbench", *argv]


def run_under_torchrun(request) -> tuple[dict | None, int]:
    """Launch the request's `nproc` processes and wait; returns rank 0's record (None when no record was written,
    e.g. bad input found by the processes) and torchrun's exit code. Their stderr passes through."""
    done = subprocess.run(torchrun_command(request.nproc, request_arguments(request)), stdout=subprocess.PIPE,
                          text=True, check=False)
    try:
        return json.loads(done.stdout), done.returncode
    except json.JSONDecodeError:
        return None, done.returncode


def record_path(request, record: dict):
    return run_dir(request.out, record["pair"]["name"], record["method"]["name"], request.preset,
                   record["config_hash"], request.epsilon, request.seed) / RECORD_NAME


def _number(value: float) -> str:
    return "inf" if math.isinf(value) and value > 0 else repr(float(value))


def _text(value) -> str:
    """A setting's value as text that its declared type parses back."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)
