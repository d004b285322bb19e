"""`dpbench sweep`: the grid runs as ordinary runs (same config hash and records as `dpbench run`), resumes by
skipping completed cells, survives a failing cell, refuses bad input before anything runs, and runs the same
way as a submitit array job; parallel runs build a shared cache entry once."""
import json
import math
import multiprocessing
import os
import time
from contextlib import nullcontext
from pathlib import Path

import pytest
from click.testing import CliRunner

from dpbench.api.registry import load_registry
from dpbench.cli import SUBMITIT_CLUSTER_ENV, main
from dpbench.run.runner import RunRequest
from dpbench.storage import cache_build_lock
from dpbench.sweep.driver import SweepRequest, cell_jobs
from dpbench.sweep.cell import CellJob
from dpbench.sweep.grid_spec import Cell, SweepInputError, expand_grid, overrides_by_method
from dpbench.sweep.plan import CellPlan, cell_request
from dpbench.sweep.slurm import SlurmOptions, executor_parameters, parse_slurm_time
from tests.conftest import MOCK_METHOD, MOCK_METHOD_B, install_fake_distribution, mock_method_installed

# Cells of the mock methods (tests/conftest.py) cut to the bone: one real DP step, 20 random images, accuracy only.
# The built-in methods' own end-to-end runs are in tests/test_methods.py.
TINY = ["--preset", "smoke", "--evaluator", "accuracy", "--set", "steps=1", "--set", "batch_size=16",
        "--set", "samples_per_class=2"]
GRID_METHODS = (MOCK_METHOD, MOCK_METHOD_B)

FLAKY_PLUGIN = '''
"""thirdparty-flaky: one DP-learned mean image per class, that fails on purpose at ε = 5, seed 1 while a marker
file exists (a cell that breaks at run time, after its input was accepted); it kills its own process instead when
the marker file says "die"."""
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import torch

import dpbench


@dataclass(frozen=True)
class FlakySettings:
    steps: int = dpbench.setting(2, "DP-SGD steps", minimum=1)
    batch_size: int = dpbench.setting(64, "expected batch size", minimum=1)
    samples_per_class: int = dpbench.setting(2, "synthetic images per class", minimum=1)
    fail_marker: str = dpbench.setting("", "fail at eps 5, seed 1 while this file exists")


class Means(torch.nn.Module):
    def __init__(self, num_classes, image_shape):
        super().__init__()
        self.means = torch.nn.Parameter(torch.zeros(num_classes, *image_shape))

    def forward(self, labels):
        return self.means[labels]


class MeanGenerator:
    def __init__(self, means):
        self.means = means

    def sample(self, labels, seed, progress=None):
        return ((self.means[labels.cpu()].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def loss(model_fn, example):
    return 0.5 * ((model_fn(example["y"].unsqueeze(0))[0] - example["x"]) ** 2).sum()


class Flaky(dpbench.Method):
    name = "thirdparty-flaky"
    description = "a mean-image method that fails on purpose in one cell"
    produces = "generator"
    reference = "tests"
    Settings = FlakySettings

    def settings(self, preset, pair):
        return FlakySettings()

    def train(self, ctx, settings):
        if settings.fail_marker and Path(settings.fail_marker).exists() and ctx.epsilon == 5 and ctx.seed == 1:
            if Path(settings.fail_marker).read_text() == "die":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("planned failure of this cell")
        model = Means(ctx.private.num_classes, ctx.private.image_shape)
        dp = dpbench.DPSettings(expected_batch_size=settings.batch_size, steps=settings.steps, max_grad_norm=1.0)
        trainer = ctx.private_trainer(model, loss, lambda examples, generator: examples, dp,
                                      prepare=lambda images: images.float() / 127.5 - 1)
        with ctx.stage("finetune"):
            trainer.run(torch.optim.SGD(model.parameters(), lr=1.0), ctx.progress)
        means = model.means.detach().cpu()
        return dpbench.MethodResult(artifact=MeanGenerator(means), trainable_parameters=means.numel(),
                                    total_parameters=means.numel())


@dpbench.hookimpl
def dpbench_register_methods(register):
    register(Flaky())
'''


def _sweep(out: Path, cache: Path, *args: str):
    result = CliRunner().invoke(main, ["sweep", "--pairs", "digits-mnist", "--out", str(out), "--cache-dir", str(cache),
                                       *args])
    summary = json.loads(result.stdout) if "--json" in args and result.stdout.strip() else None
    return result, summary


def _records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) | {"_dir": p.parent} for p in sorted(out.rglob("record.json"))]


@pytest.fixture
def flaky_plugin(plugin_path, monkeypatch):
    """The flaky method, visible to this process, to spawned pool workers (sys.path) and to submitit's job
    processes (PYTHONPATH)."""
    install_fake_distribution(plugin_path, "dpbench-flaky", "0.1.0", {"flaky": "thirdparty_flaky"},
                              {"thirdparty_flaky": FLAKY_PLUGIN})
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")]))
    return plugin_path


# --- input checks, grid expansion, dry run: nothing runs ---------------------------------------------------------

def test_unknown_set_key_exits_2_before_anything_runs(tmp_path):
    result, _ = _sweep(tmp_path / "runs", tmp_path / "cache", "--methods", "dp-loda,dp-ldm", "--eps", "1",
                       "--set", "scope.rank=8", "--set", "no_such_key=1")
    assert result.exit_code == 2
    assert "no_such_key" in result.output and "no method in this sweep" in result.output
    assert not (tmp_path / "runs").exists()


def test_a_key_goes_only_to_the_methods_that_have_it():
    registry = load_registry()
    per_method = overrides_by_method(registry, ["dp-loda", "public-only"], {"scope.rank": "8", "ddim_steps": "3"})
    assert per_method == {"dp-loda": {"scope.rank": "8", "ddim_steps": "3"}, "public-only": {"ddim_steps": "3"}}
    with pytest.raises(SweepInputError, match="'lr'"):
        overrides_by_method(registry, ["public-only"], {"lr": "0.1"})


def test_eps_inf_and_references_expand_the_grid():
    registry = load_registry()
    grid = dict(methods=["dp-loda", "dp-ldm"], pairs=["digits-mnist"], seeds=[0, 1], overrides={"scope.rank": "8"})
    plain = expand_grid(registry, epsilons=[1.0, math.inf], references=False, **grid)
    assert len(plain) == 2 * 2 * 2 and {c.epsilon for c in plain} == {1.0, math.inf}

    with_references = expand_grid(registry, epsilons=[1.0, math.inf], references=True, **grid)
    # inf is already in the grid: no cell twice; each seed gets the public-only reference at ε = 0
    assert len(with_references) == len(set(with_references)) == 2 * 2 * 2 + 2
    references = [c for c in with_references if c.method == "public-only"]
    assert [(c.epsilon, c.seed) for c in references] == [(0.0, 0), (0.0, 1)]
    assert references[0].overrides == ()  # public-only has no `scope.rank`

    only_finite = expand_grid(registry, epsilons=[5.0], references=True, **grid)
    assert sorted((c.method, c.epsilon) for c in only_finite if c.seed == 0) == [
        ("dp-ldm", 5.0), ("dp-ldm", math.inf), ("dp-loda", 5.0), ("dp-loda", math.inf), ("public-only", 0.0)]


def test_bad_eps_and_unknown_method_exit_2(tmp_path):
    result, _ = _sweep(tmp_path / "runs", tmp_path / "cache", "--methods", "dp-loda", "--eps", "1,x")
    assert result.exit_code == 2 and "'x' is not a number" in result.output
    result, _ = _sweep(tmp_path / "runs", tmp_path / "cache", "--methods", "dp-lodaa", "--eps", "1")
    assert result.exit_code == 2 and "dp-loda" in result.output  # did-you-mean
    result, _ = _sweep(tmp_path / "runs", tmp_path / "cache", "--methods", "dp-loda", "--eps", "-1")
    assert result.exit_code == 2 and "epsilon must be > 0" in result.output
    assert not (tmp_path / "runs").exists()


def test_delta_above_one_over_n_exits_2_before_anything_runs(tmp_path):
    # refused as `dpbench run` refuses it, for the whole grid, instead of as one failed cell per run
    result, _ = _sweep(tmp_path / "runs", tmp_path / "cache", "--methods", "dp-loda", "--eps", "1",
                       "--delta", "0.01")
    assert result.exit_code == 2
    assert "dp-loda" in result.output and "1/n_private" in result.output
    assert not (tmp_path / "runs").exists()


def test_a_record_carries_the_concurrency_it_ran_under(monkeypatch):
    import jsonschema
    import torch

    from dpbench.run.environment import SWEEP_JOBS_ENV, concurrency_at_end, software_env
    from dpbench.run.records import record_schema

    monkeypatch.setenv(SWEEP_JOBS_ENV, "3")
    env = software_env(torch.device("cpu"))
    assert env["concurrency"]["sweep_jobs"] == 3 and env["concurrency"]["torch_threads"] == torch.get_num_threads()
    assert len(env["concurrency"]["load_start"]) == 3 and env["concurrency"]["load_end"] is None
    concurrency_at_end(env)
    assert len(env["concurrency"]["load_end"]) == 3
    jsonschema.validate(env, record_schema()["properties"]["env"])
    env["concurrency"]["torch_threads"] = 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(env, record_schema()["properties"]["env"])
    monkeypatch.delenv(SWEEP_JOBS_ENV)
    assert software_env(torch.device("cpu"))["concurrency"]["sweep_jobs"] is None  # not in a sweep


def test_the_local_pool_and_slurm_tell_each_cell_how_many_run_beside_it(tmp_path, monkeypatch):
    from dpbench.sweep import local

    seen = []
    jobs = [CellJob(f"cell {i}", RunRequest(method="m", pair="p", epsilon=1.0), tmp_path) for i in range(3)]
    monkeypatch.setattr(local, "_run_pool", lambda jobs, workers, on_result: seen.extend(jobs) or [])
    local.run_local(jobs, 2, lambda result: None)
    assert [job.sweep_jobs for job in seen] == [2, 2, 2]
    request = SweepRequest(methods=["m"], pairs=["p"], epsilons=[1.0], seeds=[0], template=jobs[0].request,
                           executor="slurm")
    plan = CellPlan(Cell("m", "p", 1.0, 0), jobs[0].request, tmp_path, "h", None, 10)
    assert [job.sweep_jobs for job in cell_jobs([plan], request)] == [1]


def test_slurm_options():
    assert [parse_slurm_time(t) for t in ("90", "1:30", "1:30:00", "2-00", "0-00:00:30")] == [90, 2, 90, 2880, 1]
    with pytest.raises(SweepInputError):
        parse_slurm_time("soon")
    params = executor_parameters(SlurmOptions(partition="gpu", timeout_min=30, gpus_per_node=2, cpus_per_task=8,
                                              array_parallelism=4))
    assert params["slurm_partition"] == "gpu" and params["gpus_per_node"] == 2 and params["cpus_per_task"] == 8
    assert params["slurm_array_parallelism"] == 4 and params["timeout_min"] == 30


def test_several_gpus_per_node_make_each_slurm_cell_data_parallel(tmp_path):
    registry = load_registry()
    template = RunRequest(method="", pair="", epsilon=0.0, preset="smoke", out=tmp_path / "runs")
    request = SweepRequest(methods=["dp-loda"], pairs=["digits-mnist"], epsilons=[1.0], seeds=[0], template=template)
    cells = expand_grid(registry, methods=["dp-loda"], pairs=["digits-mnist"], epsilons=[1.0], seeds=[0],
                        overrides={}, references=False)
    plans = [CellPlan(cell, cell_request(template, cell), tmp_path, "hash", None, 10) for cell in cells]
    assert [job.request.nproc for job in cell_jobs(plans, request)] == [1]
    request.executor, request.slurm = "slurm", SlurmOptions(gpus_per_node=4)
    assert [job.request.nproc for job in cell_jobs(plans, request)] == [4]


def test_dry_run_prints_costs_and_writes_nothing(tmp_path, shared_cache):
    result, cells = _sweep(tmp_path / "runs", shared_cache, "--methods", "dp-loda,dp-ldm", "--eps", "1,inf",
                           "--references", "--seeds", "0", "--preset", "smoke", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "runs").exists()
    assert [c["cell"] for c in cells] == ["digits-mnist dp-loda eps=1 seed=0", "digits-mnist dp-loda eps=inf seed=0",
                                          "digits-mnist dp-ldm eps=1 seed=0", "digits-mnist dp-ldm eps=inf seed=0",
                                          "digits-mnist public-only eps=0 seed=0"]
    loda = cells[0]
    assert loda["would"] == "run" and loda["steps"] == 4 and loda["samples"] == 200
    assert loda["step_seconds_measured"] > 0  # from benchmarks/dp_step-issue12.json
    assert cells[-1]["steps"] == 0


# --- the smoke grid, locally: 2 methods x 3 eps x 2 seeds, --jobs 2 -----------------------------------------------

@pytest.fixture(scope="module")
def smoke_grid(tmp_path_factory, shared_cache, mock_method_site):
    """One cell run first by `dpbench run`, then the 12-cell grid by `dpbench sweep --jobs 2`, then again."""
    out = tmp_path_factory.mktemp("sweep") / "runs"
    with mock_method_installed(mock_method_site):
        single = CliRunner().invoke(main, ["run", "--method", MOCK_METHOD, "--pair", "digits-mnist", "--eps", "5",
                                           "--seed", "1", "--out", str(out), "--cache-dir", str(shared_cache), *TINY])
        assert single.exit_code == 0, single.output
        grid = ["--methods", ",".join(GRID_METHODS), "--eps", "1,5,10", "--seeds", "0,1", "--jobs", "2", "--json",
                *TINY]
        started = time.perf_counter()
        first = _sweep(out, shared_cache, *grid)
        first_seconds = time.perf_counter() - started
        second = _sweep(out, shared_cache, *grid)
    return out, first, second, first_seconds


@pytest.mark.slow
def test_smoke_grid_completes_with_jobs_2(smoke_grid):
    out, (result, summary), _, seconds = smoke_grid
    assert result.exit_code == 0, result.output
    # the cell `dpbench run` made is found under the same config hash and skipped; the other 11 ran
    counts = summary["counts"]  # a commit landing between the run and the sweep (a shared checkout) makes it stale
    assert (counts["done"], counts["failed"], counts["skipped"] + counts["stale"]) == (11, 0, 1), summary
    skipped = [c for c in summary["cells"] if c["status"] in ("skipped", "stale")]
    assert [c["label"] for c in skipped] == [f"digits-mnist {MOCK_METHOD} eps=5 seed=1"]
    records = _records(out)
    assert len(records) == 12 and all(r["status"] == "completed" for r in records)
    assert sorted((r["method"]["name"], r["privacy"]["epsilon_target"], r["seed"]) for r in records) == sorted(
        (m, e, s) for m in GRID_METHODS for e in (1, 5, 10) for s in (0, 1))
    assert {r["method"]["overrides"]["steps"] for r in records} == {"1"}
    for r in records:
        concurrency = r["env"]["concurrency"]
        if r["_dir"] != Path(skipped[0]["run_dir"]):
            assert "[dpbench]" in (r["_dir"] / "stderr.log").read_text()  # the cell's progress lines
            # two cells at once, each with half the cores for torch
            assert concurrency["sweep_jobs"] == 2
            assert concurrency["torch_threads"] == max(1, (os.cpu_count() or 1) // 2)
        else:
            assert concurrency["sweep_jobs"] is None  # the plain `dpbench run`
        assert len(concurrency["load_start"]) == len(concurrency["load_end"]) == 3
    assert "sweep: 11 of 12 cells to run" in result.stderr  # the progress over cells
    print(f"12-cell smoke grid, --jobs 2: {seconds:.0f} s")


@pytest.mark.slow
def test_smoke_grid_run_again_skips_everything(smoke_grid):
    out, _, (result, summary), _ = smoke_grid
    assert result.exit_code == 0, result.output
    counts = summary["counts"]
    # nothing runs again; a commit landing between the two sweeps (a shared checkout) makes them stale, not re-run
    assert (counts["done"], counts["failed"], counts["skipped"] + counts["stale"]) == (0, 0, 12), counts
    assert len(_records(out)) == 12


# --- a failing cell ----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_one_failing_cell_leaves_the_others_and_is_retried_only_when_asked(flaky_plugin, tmp_path, shared_cache,
                                                                          monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # the summary table's rows on one line each
    marker = tmp_path / "fail-now"
    marker.touch()
    out = tmp_path / "runs"
    grid = ["--methods", "thirdparty-flaky", "--eps", "1,5", "--seeds", "0,1", "--preset", "smoke",
            "--evaluator", "accuracy", "--set", f"fail_marker={marker}", "--jobs", "2", "--json"]

    result, summary = _sweep(out, shared_cache, *grid)
    assert result.exit_code == 1, result.output
    assert summary["counts"] == {"done": 3, "skipped": 0, "stale": 0, "failed": 1}
    failed = [c for c in summary["cells"] if c["status"] == "failed"]
    assert failed[0]["label"] == "digits-mnist thirdparty-flaky eps=5 seed=1"
    assert "RuntimeError: planned failure of this cell" in failed[0]["reason"]
    statuses = sorted((r["privacy"]["epsilon_target"], r["seed"], r["status"]) for r in _records(out))
    assert statuses == [(1, 0, "completed"), (1, 1, "completed"), (5, 0, "completed"), (5, 1, "failed")]

    marker.unlink()  # the cause is fixed; a plain rerun still leaves the failed cell alone (the summary table)
    table, _ = _sweep(out, shared_cache, *grid[:-1])
    assert table.exit_code == 1
    assert "0 done, 3 skipped, 0 stale, 1 failed" in table.stdout
    assert "failed earlier" in table.stdout and "planned failure" in table.stdout and "--retry-failed" in table.stdout

    result, summary = _sweep(out, shared_cache, *grid, "--retry-failed")
    assert result.exit_code == 0, result.output
    assert summary["counts"] == {"done": 1, "skipped": 3, "stale": 0, "failed": 0}
    assert all(r["status"] == "completed" for r in _records(out))
    log = (out / Path(summary["cells"][3]["run_dir"]).relative_to(out) / "stderr.log").read_text()
    assert log.count("=== dpbench sweep:") == 2 and "planned failure" in log  # both attempts, appended


@pytest.mark.slow
def test_a_cell_that_kills_its_worker_fails_alone(flaky_plugin, tmp_path, shared_cache):
    marker = tmp_path / "die-now"
    marker.write_text("die")
    out = tmp_path / "runs"
    result, summary = _sweep(out, shared_cache, "--methods", "thirdparty-flaky", "--eps", "1,5", "--seeds", "0,1",
                             "--preset", "smoke", "--evaluator", "accuracy", "--set", f"fail_marker={marker}",
                             "--jobs", "2", "--json")
    assert result.exit_code == 1, result.output
    assert summary["counts"] == {"done": 3, "skipped": 0, "stale": 0, "failed": 1}
    failed = [c for c in summary["cells"] if c["status"] == "failed"]
    assert failed[0]["label"] == "digits-mnist thirdparty-flaky eps=5 seed=1"
    assert "worker process died" in failed[0]["reason"]
    assert sorted(r["status"] for r in _records(out)) == ["completed"] * 3


# --- the submitit path --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_submitit_array_job_runs_the_grid_with_logs_beside_records(mock_method, tmp_path, shared_cache,
                                                                  monkeypatch):
    """`--executor slurm` through submitit's LocalExecutor: the same pickled array tasks Slurm would run. Each task
    is a fresh process, so the grid is 2 methods x 2 eps x one seed (the local executor's test runs the whole
    2 x 3 x 2 grid); seed 1, not the default 0, shows the seed reaches the task."""
    monkeypatch.setenv(SUBMITIT_CLUSTER_ENV, "local")
    out = tmp_path / "runs"
    result, summary = _sweep(out, shared_cache, "--methods", ",".join(GRID_METHODS), "--eps", "1,5", "--seeds", "1",
                             "--executor", "slurm", "--slurm-time", "20", "--json", *TINY)
    assert result.exit_code == 0, result.output
    assert summary["counts"] == {"done": 4, "skipped": 0, "stale": 0, "failed": 0}
    records = _records(out)
    assert sorted((r["method"]["name"], r["privacy"]["epsilon_target"], r["seed"]) for r in records) == sorted(
        (m, e, s) for m in GRID_METHODS for e in (1, 5) for s in (1,))
    for r in records:
        assert r["status"] == "completed"
        assert "[dpbench]" in (r["_dir"] / "stderr.log").read_text()
        assert (r["_dir"] / "stdout.log").read_text().startswith("=== dpbench sweep:")
    assert list((out / "submitit").glob("*.pkl")), "submitit's own job files"


# --- the cache lock -----------------------------------------------------------------------------------------------

def _build_entry(entry: str, log: str, barrier, locked: bool) -> None:
    barrier.wait()  # both processes ask for the entry at the same moment
    with cache_build_lock(Path(entry)) if locked else nullcontext():
        if not Path(entry).exists():
            with open(log, "a") as handle:
                handle.write("built\n")
            time.sleep(0.3)  # the build takes a while
            Path(entry).write_text("weights")


@pytest.mark.parametrize("locked, builds", [(True, 1), (False, 2)], ids=["with-lock", "without-lock-control"])
def test_two_processes_build_a_cache_entry_once(tmp_path, locked, builds):
    entry, log = tmp_path / "cache" / "entry.pt", tmp_path / "builds.log"
    entry.parent.mkdir()
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    workers = [context.Process(target=_build_entry, args=(str(entry), str(log), barrier, locked)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    assert log.read_text().count("built") == builds
    assert entry.read_text() == "weights"
