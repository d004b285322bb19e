#!/usr/bin/env bash
# The committed leaderboard's grid (issue 26), from one commit, alone on the machine.
#
#   bash benchmarks/leaderboard_grid.sh COMMIT [WORKTREE]
#
# COMMIT is checked out in a detached worktree (default /tmp/dpbench-grid); dpbench is imported from it, so every
# record's env.git_commit names COMMIT, and the records go into WORKTREE/leaderboard/records. Seed-major, so a
# grid stopped part way has every cell at the same number of seeds; running it again resumes cell by cell (a
# finished cell is skipped, a killed one re-run). Copy the records into the repo's leaderboard/records when done,
# then `dpbench leaderboard --runs leaderboard/records --out leaderboard`.
set -u
COMMIT=${1:?usage: leaderboard_grid.sh COMMIT [WORKTREE]}
WT=${2:-/tmp/dpbench-grid}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
METHODS=dp-loda,dp-diffusion,dp-ldm,dp-lora,dp-sgd
[ -d "$WT" ] || git -C "$REPO" worktree add --detach "$WT" "$COMMIT"
cd "$WT"
export PYTHONPATH=$WT
$PY -c "import dpbench; print('dpbench from', dpbench.__file__)"
sweep() {  # one seed at a time: a sweep over several seeds would not finish them in step
  date; echo "== seed $1${2:+ $2}"
  /usr/bin/time -f "wall %e s" $PY -m dpbench sweep --methods $METHODS --pairs digits-mnist --eps 1,5,10 \
    --seeds "$1" ${2:-} --jobs 1 --rerun-stale --out leaderboard/records
}
for seed in 0 1 2; do sweep $seed; done                # first every ε cell at n = 3,
for seed in 0 1 2; do sweep $seed --references; done   # then ε = ∞, both public-only references, the ceiling,
for seed in 3 4; do sweep $seed; done                  # then n = 5 (the issue asks references at seeds 0-2 only)
date; echo "== grid done"
