"""Full-size checks on official-size files (issue 24): `dpbench data check` per pair and the ImageNet32 load, each
under `/usr/bin/time -v`, with wall, CPU, peak RSS and the load average beside every wall figure.

    python benchmarks/fabricate_official_files.py --out /tmp/fullsize
    python benchmarks/full_size_runs.py --data-root /tmp/fullsize --pairs svhn-mnist,imagenet32-cifar10 --json out.json
    python benchmarks/full_size_runs.py --data-root /tmp/fullsize --pairs svhn-mnist --runs dp-loda,dp-sgd --no-check

Each data check gets an empty cache folder, so the near-duplicate pass runs (a second check reads the cached counts).
`--runs METHODS` adds, per pair and method, a capped `dpbench run --preset paper` through every stage
(public pre-training of the capped recipe, DP fine-tuning, sampling, every evaluator), with `--max-steps`,
`--max-batch` and `--max-samples` (CAPS below), on `--nproc` processes, a fresh run folder each and one cache per
pair (its first run pays the pre-training, the overlap pass and the FID reference). `--imagenet32-load` measures
loading all of ImageNet32 train and val as uint8 (`load_split`), the data alone being 3.9 GB. The machine may be shared: CPU time (user + sys) and peak RSS are the steadier figures.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAIRS = ("svhn-mnist", "imagenet32-cifar10", "imagenet32-cifar10-1pct", "imagenet-celeba", "imagenet-celeba-64")
LOAD_IMAGENET32 = """
import resource, sys
from dpbench.data.readers import imagenet32_npz
train, _ = imagenet32_npz.load_split(sys.argv[1], "train")
val, _ = imagenet32_npz.load_split(sys.argv[1], "val")
data = train.images.numel() + val.images.numel()
print(f"loaded {len(train):,} + {len(val):,} images, {data / 2**30:.2f} GiB of uint8")
"""


def timed(command: list[str]) -> dict:
    """Run `command` under GNU time -v: its output, wall and CPU seconds, peak RSS, and the load average around it."""
    before = os.getloadavg()[0]
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True, cwd=REPO)
    after = os.getloadavg()[0]
    report = done.stderr
    field = lambda name: re.search(rf"{re.escape(name)}: (.+)", report).group(1).strip()  # noqa: E731
    parts = [float(p) for p in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")]
    wall = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    return {"command": " ".join(command), "exit_code": done.returncode, "wall_s": round(wall, 1),
            "cpu_s": round(float(field("User time (seconds)")) + float(field("System time (seconds)")), 1),
            "peak_rss_gib": round(int(field("Maximum resident set size (kbytes)")) / 2**20, 2),
            "load_before": round(before, 1), "load_after": round(after, 1),
            "stdout": done.stdout, "stderr": report[:report.find("\tCommand being timed")]}


def data_check(pair: str, data_root: str) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        result = timed([str(Path(sys.executable).with_name("dpbench")), "data", "check", "--pair", pair,
                        "--data-root", data_root, "--cache-dir", cache])
    result["pair"] = pair
    result["capped_shown"] = "capped:" in result["stdout"]
    return result


CAPS = {"max_steps": 2, "max_batch": 64, "max_samples": 100}
# δ below 1 / n_private (dpbench refuses a larger one): CelebA's 162,770 private images take DPDM's δ = 1e-6
# (Dockhorn et al. 2023, CelebA experiments); the others the mission's 1e-5.
DELTA = {"imagenet-celeba": 1e-6, "imagenet-celeba-64": 1e-6}


def capped_run(pair: str, method: str, data_root: str, caps: dict, nproc: int, cache: str) -> dict:
    """One capped paper-preset run, timed as a whole; per stage, the record's own wall seconds. `cache` is the
    pair's: its first run pays the public pre-training and the FID reference, later methods reuse what they share."""
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in caps.items()]
    with tempfile.TemporaryDirectory() as folder:
        result = timed([str(Path(sys.executable).with_name("dpbench")), "run", "--method", method, "--pair", pair,
                        "--eps", "10", "--delta", str(DELTA.get(pair, 1e-5)), "--preset", "paper",
                        "--data-root", data_root, "--out", f"{folder}/runs",
                        "--cache-dir", cache, "--nproc", str(nproc), "--json", *flags])
    result.update(pair=pair, method=method, caps=caps, nproc=nproc)
    try:
        record = json.loads(result["stdout"])
    except json.JSONDecodeError:
        return result
    steps = record["privacy"]["steps"] if record.get("privacy") else 0
    walls = record["cost"]["wall_seconds"]
    result.update(stages={k: round(v, 1) for k, v in walls.items()}, dp_steps=steps,
                  epsilon=record["privacy"]["epsilon"] if record.get("privacy") else None,
                  world_size=record.get("world_size"), record_peak_mb=record["cost"].get("peak_memory_mb"),
                  metrics={name: m.get("value") for name, m in record.get("metrics", {}).items()},
                  expected_batch=[s["expected_batch_size"] for s in record["privacy"].get("stages", [])]
                  if record.get("privacy") else [])
    result["stdout"] = ""
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--pairs", default=",".join(PAIRS))
    parser.add_argument("--imagenet32-load", action="store_true", help="Also measure loading ImageNet32 train + val.")
    parser.add_argument("--json", type=Path, help="Append the results (one JSON object a line) to this file.")
    parser.add_argument("--runs", default="", help="Methods to run capped at the paper preset on every pair.")
    parser.add_argument("--no-check", action="store_true", help="Skip `dpbench data check`.")
    parser.add_argument("--nproc", type=int, default=1, help="Data-parallel processes of each capped run.")
    for name, value in CAPS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=value, help=f"The runs' cap (default {value}).")
    args = parser.parse_args(argv)
    results = []
    if args.imagenet32_load:
        results.append({**timed([sys.executable, "-c", LOAD_IMAGENET32, args.data_root]),
                        "pair": "imagenet32 train+val load"})
        report(results[-1], args.json)
    pairs = [pair.strip() for pair in args.pairs.split(",") if pair.strip()]
    for pair in pairs if not args.no_check else []:
        results.append(data_check(pair, args.data_root))
        report(results[-1], args.json)
    caches = tempfile.TemporaryDirectory()
    for pair in pairs:
        for method in [m.strip() for m in args.runs.split(",") if m.strip()]:
            caps = {name: getattr(args, name) for name in CAPS}
            results.append(capped_run(pair, method, args.data_root, caps, args.nproc, f"{caches.name}/{pair}"))
            report(results[-1], args.json)
    caches.cleanup()
    return 0 if all(r["exit_code"] == 0 for r in results) else 1


def report(r: dict, json_path: Path | None) -> None:
    name = f"{r['pair']} {r['method']}" if "method" in r else r["pair"]
    print(f"{name:28} exit {r['exit_code']}  wall {r['wall_s']:6.1f} s (load {r['load_before']}-"
          f"{r['load_after']})  CPU {r['cpu_s']:6.1f} s  peak RSS {r['peak_rss_gib']:.2f} GiB"
          + (f"  capped shown: {r['capped_shown']}" if "capped_shown" in r else ""), flush=True)
    print("   " + (r["stdout"].strip() or json.dumps({k: r.get(k) for k in ("stages", "dp_steps", "epsilon",
          "world_size", "expected_batch", "metrics")})).replace("\n", "\n   "), flush=True)
    if r["exit_code"]:
        print("   " + r["stderr"].strip()[-2000:].replace("\n", "\n   "), flush=True)
    if json_path:
        with open(json_path, "a") as f:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
