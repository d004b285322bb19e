"""`dpbench sweep`: a grid of runs (methods × pairs × ε × seeds), each an ordinary `dpbench run`, run by a local
process pool or as one Slurm array job through submitit; resumable, one cell's failure never stops the others."""
