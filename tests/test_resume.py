"""Exact resume: a run SIGKILLed mid-fine-tune and resumed gives the uninterrupted run's result, bit for bit."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dpbench.cli import main

# 15 steps leave room to kill the run after its second checkpoint and before it ends; 50 synthetic images (a run
# cap, docs/data.md) are enough to compare bit for bit
STEPS = 15
ARGS = ["run", "--method", "dp-loda", "--pair", "digits-mnist", "--eps", "5", "--preset", "smoke", "--set",
        f"steps={STEPS}", "--checkpoint-every", "3", "--max-samples", "50", "--evaluator", "accuracy", "--json"]


def _cli(out, cache, *extra):
    return [sys.executable, "-c", "from dpbench.cli import main; main()", *ARGS, "--out", str(out),
            "--cache-dir", str(cache), *extra]


def _synthetic(out: Path) -> np.ndarray:
    (path,) = out.rglob("synthetic.npz")
    return np.load(path)["images"]


@pytest.mark.slow  # three dp-loda runs in subprocesses, one of them SIGKILLed
def test_a_killed_run_resumes_to_the_same_result(tmp_path, shared_cache):
    whole = subprocess.run(_cli(tmp_path / "whole", shared_cache), capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr[-2000:]
    reference = json.loads(whole.stdout)

    started = time.perf_counter()
    killed = subprocess.Popen(_cli(tmp_path / "killed", shared_cache), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    checkpoint = None
    while killed.poll() is None and time.perf_counter() - started < 600:
        found = list((tmp_path / "killed").rglob("dp-stage0.pt"))
        if found:
            state = torch.load(found[0], weights_only=True)
            if state["steps_done"] >= 6:  # well inside the run's steps
                checkpoint = state["steps_done"]
                os.kill(killed.pid, signal.SIGKILL)
                break
        time.sleep(0.02)
    killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL and checkpoint is not None and checkpoint < STEPS
    assert not list((tmp_path / "killed").rglob("record.json"))  # nothing written but the checkpoint

    resumed = subprocess.run(_cli(tmp_path / "killed", shared_cache, "--resume"), capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    record = json.loads(resumed.stdout)
    assert record["privacy"]["resumed_from_steps"][0] >= checkpoint
    assert record["privacy"]["epsilon"] == reference["privacy"]["epsilon"]
    assert record["privacy"]["steps"] == reference["privacy"]["steps"] == STEPS  # no step taken twice
    assert np.array_equal(_synthetic(tmp_path / "killed"), _synthetic(tmp_path / "whole"))  # bit for bit
    assert record["metrics"]["accuracy"]["value"] == reference["metrics"]["accuracy"]["value"]
    assert not list((tmp_path / "killed").rglob("dp-stage*.pt"))  # deleted once the run completed
    print(f"\nresume test: killed at step >= {checkpoint} of {STEPS}, {time.perf_counter() - started:.0f} s for "
          "kill + resume")


@pytest.mark.slow  # a whole run; the full suite (.ci/run) keeps it
def test_a_checkpoint_of_another_run_is_refused(mock_method, tmp_path, shared_cache):
    runner = CliRunner()
    args = ["run", "--method", mock_method, *ARGS[3:-1], "--out", str(tmp_path), "--cache-dir", str(shared_cache)]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    (record_path,) = tmp_path.rglob("record.json")
    folder = record_path.parent / "checkpoints"
    folder.mkdir()
    torch.save({"format": 1, "identity": {"config_hash": "0000000000", "data_digest": "x"}, "stage": 0},
               folder / "dp-stage0.pt")
    again = runner.invoke(main, [*args, "--resume"])
    assert again.exit_code == 2
    assert "belongs to another run" in again.output
