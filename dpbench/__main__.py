"""`python -m dpbench ...`, the same as the `dpbench` command; `torchrun --nproc-per-node N -m dpbench run ...`
launches a data-parallel run this way."""
from dpbench.cli import main

if __name__ == "__main__":
    main(prog_name="dpbench")
