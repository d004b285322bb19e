"""How long the `dpbench` command takes to start: wall time of `dpbench --help` and `dpbench list methods`, each in
a fresh process, median of N (default 5) after one untimed warm-up run (the OS file cache), plus whether the
process imported torch (from `python -X importtime`, in a separate untimed run).

    python benchmarks/startup_time.py [--repeats 5] [--out benchmarks/startup_time.json]

Targets (issue 22): `dpbench --help` <= 1.5 s; `dpbench list methods` <= 1.5 s once the built-in plugins import
without torch. Runs the command as `python -m dpbench` with this interpreter, which is what the `dpbench` script
does; the load on the machine is printed beside the numbers, since a shared machine inflates them.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {"dpbench --help": ["--help"], "dpbench list methods": ["list", "methods"]}


def wall_seconds(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dpbench", *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def imported(args: list[str]) -> set[str]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "dpbench", *args], check=True,
                          capture_output=True, text=True)
    return {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="Also write the JSON here.")
    options = parser.parse_args()
    results = {}
    for name, args in COMMANDS.items():
        wall_seconds(args)  # warm-up, untimed
        times = [wall_seconds(args) for _ in range(options.repeats)]
        modules = imported(args)
        results[name] = {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
                         "max_s": round(max(times), 3), "runs_s": [round(t, 3) for t in times],
                         "imports_torch": "torch" in modules, "imports_opacus": "opacus" in modules}
        print(f"{name:24} median {results[name]['median_s']:.2f} s (min {results[name]['min_s']:.2f}, max "
              f"{results[name]['max_s']:.2f}); torch imported: {results[name]['imports_torch']}")
    document = {"commands": results, "repeats": options.repeats, "python": platform.python_version(),
                "cpus": os.cpu_count(), "load_average_1m_5m_15m": list(os.getloadavg())}
    print(json.dumps(document, indent=2))
    if options.out:
        options.out.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
