#!/usr/bin/env bash
# Issue 12's GPU check as one command on a lent GPU machine, after `bash benchmarks/gpu/wheels.sh` here:
#   device run, carry [".whl"], command "bash benchmarks/gpu/check.sh", timeout_s 540
# It installs the carried wheels and dpbench (without touching the image's torch) into /tmp/site, then writes
# into $OUT: the GPU and torch it ran on, the DP step against the non-private step on the GPU (every scope,
# K = 1 and 4), the paper preset's per-stage GPU-hours for every method and real pair (FID left out: its
# Inception weights are not carried), the record of one default dp-loda run on the GPU, and a capped paper run of
# svhn-mnist on official-size files fabricated there (benchmarks/fabricate_official_files.py; every stage but FID).
# Each step has its own time limit (530 s in all), so a slow one still returns the rest.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/dpbench-gpu-check}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing the carried wheels failed" >&2; exit 1; }
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --upgrade --target /tmp/site . \
    || { echo "installing dpbench failed" >&2; exit 1; }
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.csv"
python3 -c "import torch, dpbench; print('torch', torch.__version__, torch.cuda.get_device_name(0))" | tee "$OUT/torch.txt"
start=$(date +%s)
timeout 150 python3 benchmarks/dp_step.py --device cuda --k 1 4 --impl ghost --json \
    > "$OUT/dp_step-cuda.json" 2> "$OUT/dp_step-cuda.err"
echo "dp_step: rc $? after $(( $(date +%s) - start )) s"
start=$(date +%s)
timeout 180 python3 benchmarks/paper_costs.py --device cuda --no-fid --json \
    > "$OUT/paper_costs-cuda.json" 2> "$OUT/paper_costs-cuda.err"
echo "paper_costs: rc $? after $(( $(date +%s) - start )) s"
# one real run end to end on the GPU (the default preset's shipped backbone; accuracy only, FID needs the weights)
start=$(date +%s)
timeout 90 python3 -m dpbench run --method dp-loda --pair digits-mnist --eps 10 --device cuda --evaluator accuracy \
    --out /tmp/dpbench-runs --cache-dir /tmp/dpbench-cache --json > "$OUT/run-dp-loda-cuda.json" 2> "$OUT/run-dp-loda-cuda.err"
echo "dp-loda default run: rc $? after $(( $(date +%s) - start )) s"
# issue 24 item 5: the capped full-size run of one real pair, its files written on the device (~25 s of CPU)
start=$(date +%s)
timeout 110 sh -c 'python3 benchmarks/fabricate_official_files.py --out /tmp/fullsize --datasets mnist,svhn >&2 \
    && python3 -m dpbench run --method dp-loda --pair svhn-mnist --eps 10 --preset paper \
        --data-root /tmp/fullsize --max-steps 2 --max-batch 64 --max-samples 100 --device cuda \
        --evaluator accuracy,accuracy_real_data,memorisation --out /tmp/dpbench-runs --cache-dir /tmp/dpbench-cache --json' \
    > "$OUT/run-svhn-mnist-paper-capped-cuda.json" 2> "$OUT/run-svhn-mnist-paper-capped-cuda.err"
echo "svhn-mnist capped paper run: rc $? after $(( $(date +%s) - start )) s"
