"""The dpbench command line: run, sweep, evaluate, pretrain, list, plugins, leaderboard, data."""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from dpbench.data.types import DataMissingError
from dpbench.api.registry import UnknownNameError, load_registry
from dpbench.api.settings import describe

DATA_ROOT_ENV = "DPBENCH_DATA_ROOT"
CACHE_ENV = "DPBENCH_CACHE"

RUN_EXAMPLES = """
\b
Examples:
  dpbench run --method dp-loda --pair digits-mnist --eps 10
  dpbench run --method dp-loda --pair digits-mnist --eps 1 --seed 2 --preset smoke --json
  dpbench run --method dp-loda --pair digits-mnist --eps 10 --set rank=8 --set steps=300
  dpbench run --method dp-lora --pair digits-mnist --eps 10 --set noise_multiplicity=4
  dpbench run --method dp-loda --pair digits-mnist --eps inf        # the same method without DP
  dpbench run --method public-only --pair digits-mnist --eps 0     # the pre-trained model, no private data
  dpbench run --method dp-loda --pair digits-mnist --eps 10 --resume  # continue after a crash or a kill
  dpbench run --method dp-loda --pair digits-mnist --eps 10 --secure-rng  # noise from os.urandom, for a release
  dpbench run --method dp-loda --pair digits-mnist --eps 10 --nproc 4  # data-parallel on 4 GPUs (torchrun)
"""


def _stdout() -> Console:
    return Console()


def _parse_override(text: str) -> tuple[str, str]:
    """KEY=VALUE; VALUE stays text here and is parsed by the setting's declared type."""
    if "=" not in text:
        raise click.BadParameter(f"'{text}' is not KEY=VALUE", param_hint="--set")
    key, raw = text.split("=", 1)
    return key.strip(), raw


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dpbench")
def main() -> None:
    """Benchmark differentially private fine-tuning of diffusion models.

    \b
    Examples:
      dpbench list methods
      dpbench run --method dp-loda --pair digits-mnist --eps 10
      dpbench sweep --methods dp-loda,dp-ldm --pairs digits-mnist --eps 1,5,10 --seeds 0,1,2 --jobs 2
      dpbench evaluate runs/digits-mnist/dp-loda/<preset-hash>/eps10/seed0
      dpbench leaderboard --runs runs
    """


@main.command(epilog=RUN_EXAMPLES)
@click.option("--method", required=True, help="Method name (see `dpbench list methods`).")
@click.option("--pair", required=True, help="Public->private dataset pair (see `dpbench list pairs`).")
@click.option("--eps", "epsilon", required=True, type=float, help="Target epsilon (> 0); 'inf' for a non-private run; 0 for public-only.")
@click.option("--delta", default=1e-5, show_default=True, type=float, help="Target delta, used exactly as given.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--preset", default="default", show_default=True, type=click.Choice(["default", "smoke", "paper"]))
@click.option("--out", default="runs", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--evaluator", "evaluators", multiple=True, help="Evaluator to run (repeatable; default: all that apply).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a method hyperparameter (repeatable).")
@click.option("--data-root", default=None, envvar=DATA_ROOT_ENV, show_envvar=True, help="Folder with the real datasets' files.")
@click.option("--download", is_flag=True, help="Let torchvision fetch the pair's missing files first (needs a network).")
@click.option("--cache-dir", default=".dpbench-cache", envvar=CACHE_ENV, show_envvar=True, show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Pre-training, Inception weights and FID statistics cache.")
@click.option("--rebuild-backbone", is_flag=True, help="Ignore shipped public backbones and pre-train them locally.")
@click.option("--allow-large-delta", is_flag=True,
              help="Run even with delta >= 1/n_private (refused otherwise); the record and leaderboard mark it.")
@click.option("--rng", type=click.Choice(["seeded", "os-seeded", "secure"]), default="seeded", show_default=True,
              help="Source of the DP noise and Poisson sampling: seeded from --seed (a reproducible simulation), "
                   "seeded from the OS, or os.urandom (cryptographically secure, for a release).")
@click.option("--secure-rng", is_flag=True, help="Same as --rng secure.")
@click.option("--resume", is_flag=True,
              help="Continue a killed run from its checkpoints: same result, bit for bit, and no step spent twice.")
@click.option("--checkpoint-every", default=50, show_default=True, type=click.IntRange(min=1),
              help="DP steps between checkpoints (written owner-only in the run folder, deleted when it completes).")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON on stdout.")
@click.option("--nproc", default=1, show_default=True, type=click.IntRange(min=1),
              help="Train data-parallel on N processes (one per GPU): relaunches this command under torchrun. "
                   "Same ε and ledger as one process; rank 0 writes the record.")
def run(method, pair, epsilon, delta, seed, preset, out, device, evaluators, overrides, data_root, download, cache_dir,
        rebuild_backbone, allow_large_delta, rng, secure_rng, resume, checkpoint_every, as_json, nproc):
    """Fine-tune METHOD on PAIR under (EPS, DELTA)-DP, evaluate it, and write its record."""
    from dpbench.run.progress import make_progress
    from dpbench.run.runner import LaunchedRunError, RunInputError, RunRequest, execute

    request = RunRequest(method=method, pair=pair, epsilon=epsilon, delta=delta, seed=seed, preset=preset, out=out,
                         device=device, cache_dir=cache_dir, data_root=data_root,
                         evaluators=list(evaluators) or None, overrides=dict(_parse_override(o) for o in overrides),
                         rebuild_backbone=rebuild_backbone, allow_large_delta=allow_large_delta,
                         rng="secure" if secure_rng else rng, resume=resume, checkpoint_every=checkpoint_every,
                         nproc=nproc)
    registry = load_registry()
    _report_broken_plugins(registry)
    try:
        if download:
            _download(registry.pair(pair), data_root)
        with make_progress() as progress:
            outcome = execute(registry, request, progress)
    except (UnknownNameError, RunInputError) as exc:
        raise click.UsageError(str(exc)) from None
    except DataMissingError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except LaunchedRunError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    record = outcome.record
    if outcome.record_path is None:  # a data-parallel rank other than 0: rank 0 reports the run
        sys.exit(0 if outcome.ok else 1)
    if as_json:
        click.echo(json.dumps(_jsonable(record), indent=2))
    else:
        _print_result(record, outcome.record_path)
    if not outcome.ok:
        click.echo(f"Error: run failed: {record['error']['type']}: {record['error']['message']}", err=True)
        sys.exit(1)


SWEEP_EXAMPLES = """
\b
Examples:
  dpbench sweep --methods dp-loda,dp-ldm --pairs digits-mnist --eps 1,5,10 --seeds 0,1,2 --jobs 2
  dpbench sweep --methods dp-loda --pairs digits-mnist --eps 1,10 --references --dry-run
  dpbench sweep --methods dp-loda,dp-lora --pairs digits-mnist --eps 10 --set rank=8 --retry-failed
  dpbench sweep --methods dp-loda --pairs digits-mnist --eps 1,5,10,inf --seeds 0,1,2 --preset paper \\
      --executor slurm --slurm-partition gpu --slurm-time 4:00:00 --gpus-per-node 1 --cpus-per-task 8
"""
SUBMITIT_CLUSTER_ENV = "DPBENCH_SUBMITIT_CLUSTER"


@main.command(epilog=SWEEP_EXAMPLES)
@click.option("--methods", required=True, help="Comma-separated method names.")
@click.option("--pairs", required=True, help="Comma-separated pair names.")
@click.option("--eps", "epsilons", required=True, help="Comma-separated target epsilons; 'inf' for non-private runs.")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds.")
@click.option("--delta", default=1e-5, show_default=True, type=float, help="Target delta, used exactly as given.")
@click.option("--preset", default="default", show_default=True, type=click.Choice(["default", "smoke", "paper"]))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a setting of every method of the sweep that has it (repeatable).")
@click.option("--references", is_flag=True,
              help="Add, per pair and seed, the public-only reference runs (eps 0) and each method at eps = inf.")
@click.option("--evaluator", "evaluators", multiple=True, help="Evaluator to run (repeatable; default: all that apply).")
@click.option("--out", default="runs", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--data-root", default=None, envvar=DATA_ROOT_ENV, show_envvar=True, help="Folder with the real datasets' files.")
@click.option("--cache-dir", default=".dpbench-cache", envvar=CACHE_ENV, show_envvar=True, show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Pre-training, Inception weights and FID statistics cache.")
@click.option("--retry-failed", is_flag=True, help="Run again the cells whose record says failed (skipped otherwise).")
@click.option("--dry-run", is_flag=True, help="Print the cells and what each would cost; run and write nothing.")
@click.option("--executor", default="local", show_default=True, type=click.Choice(["local", "slurm"]),
              help="local: a pool of --jobs processes; slurm: one array job through submitit.")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1), help="Local worker processes.")
@click.option("--slurm-partition", default=None, help="Slurm partition of the array job.")
@click.option("--slurm-time", default="60", show_default=True, help="Time limit per cell: minutes or [D-]HH:MM:SS.")
@click.option("--gpus-per-node", default=0, show_default=True, type=click.IntRange(min=0),
              help="GPUs per cell (Slurm); above 1 the cell trains data-parallel under torchrun, as `run --nproc`.")
@click.option("--cpus-per-task", default=None, type=click.IntRange(min=1), help="CPUs per cell.")
@click.option("--slurm-array-parallelism", default=16, show_default=True, type=click.IntRange(min=1),
              help="At most this many cells run at once on Slurm.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary (or the dry run's cells) as JSON on stdout.")
def sweep(methods, pairs, epsilons, seeds, delta, preset, overrides, references, evaluators, out, device, data_root,
          cache_dir, retry_failed, dry_run, executor, jobs, slurm_partition, slurm_time, gpus_per_node, cpus_per_task,
          slurm_array_parallelism, as_json):
    """Run a grid of METHODS x PAIRS x EPS x SEEDS, each cell an ordinary `dpbench run` (same records, same
    config hash), locally or as one Slurm array job. Resumable: a cell whose completed record exists is skipped;
    a failed one is run again only with --retry-failed. One failing cell never stops the others. Exit 0 only
    when every cell has a completed record, 1 otherwise, 2 on bad input (nothing run, nothing written)."""
    from dpbench.run.progress import make_progress
    from dpbench.run.runner import RunInputError, RunRequest
    from dpbench.sweep.driver import SweepRequest, plan_sweep, timed_sweep
    from dpbench.sweep.grid_spec import SweepInputError, parse_epsilons, parse_names, parse_seeds
    from dpbench.sweep.report import dry_run_document, dry_run_table
    from dpbench.sweep.slurm import SlurmOptions, parse_slurm_time
    from dpbench.sweep.summary import exit_code, summary_document, summary_table

    registry = load_registry()
    _report_broken_plugins(registry)
    template = RunRequest(method="", pair="", epsilon=0.0, delta=delta, preset=preset, out=out, device=device,
                          cache_dir=cache_dir, data_root=data_root, evaluators=list(evaluators) or None)
    try:
        request = SweepRequest(
            methods=parse_names(methods, "--methods"), pairs=parse_names(pairs, "--pairs"),
            epsilons=parse_epsilons(epsilons), seeds=parse_seeds(seeds), template=template,
            overrides=dict(_parse_override(o) for o in overrides), references=references, retry_failed=retry_failed,
            executor=executor, jobs=jobs, submitit_cluster=os.environ.get(SUBMITIT_CLUSTER_ENV, "slurm"),
            slurm=SlurmOptions(partition=slurm_partition, timeout_min=parse_slurm_time(slurm_time),
                               gpus_per_node=gpus_per_node, cpus_per_task=cpus_per_task,
                               array_parallelism=slurm_array_parallelism))
        plans = plan_sweep(registry, request)
        if dry_run:
            if as_json:
                click.echo(json.dumps(_jsonable(dry_run_document(plans)), indent=2))
            else:
                _stdout().print(dry_run_table(plans))
            return
        with make_progress() as progress:
            outcomes, wall_seconds = timed_sweep(plans, request, progress)
    except (UnknownNameError, RunInputError, SweepInputError) as exc:
        raise click.UsageError(str(exc)) from None
    except DataMissingError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(summary_document(outcomes, wall_seconds), indent=2))
    else:
        _stdout().print(summary_table(outcomes, wall_seconds))
    sys.exit(exit_code(outcomes))


AUDIT_EXAMPLES = """
\b
Examples:
  dpbench audit --method dp-sgd --pair digits-mnist --eps 1
  dpbench audit --method dp-loda --pair digits-mnist --eps 10 --canaries 2000 --guesses 100 --json
"""


@main.command(epilog=AUDIT_EXAMPLES)
@click.option("--method", required=True, help="Method whose DP training is audited.")
@click.option("--pair", required=True, help="Pair whose private split gets the canaries.")
@click.option("--eps", "epsilon", required=True, type=click.FloatRange(min=0, min_open=True),
              help="The claimed ε (finite).")
@click.option("--delta", default=1e-5, show_default=True, type=float, help="Target delta, used exactly as given.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--preset", default="default", show_default=True, type=click.Choice(["default", "smoke", "paper"]))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a method hyperparameter.")
@click.option("--canaries", default=1000, show_default=True, type=click.IntRange(min=2), help="Canary count m.")
@click.option("--guesses", default=50, show_default=True, type=click.IntRange(min=1),
              help="Guesses on each side: 'in' for the top k scores, 'out' for the bottom k.")
@click.option("--out", default="runs", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--data-root", default=None, envvar=DATA_ROOT_ENV, show_envvar=True, help="Folder with the real datasets' files.")
@click.option("--cache-dir", default=".dpbench-cache", envvar=CACHE_ENV, show_envvar=True, show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def audit(method, pair, epsilon, delta, seed, preset, overrides, canaries, guesses, out, device, data_root, cache_dir,
          as_json):
    """Audit a method's DP training empirically: an ε lower bound from one training run with white-box
    gradient canaries (Steinke, Nasr & Jagielski 2023). The audit trains its own model, with the canaries in
    it, and writes a record of kind `audit`; a bound above the claimed ε means the training leaks more than it
    claims. Exit 0 when the bound is at most the claim, 1 when it exceeds it (or the run failed), 2 on bad input."""
    from dpbench.privacy.audit import AuditSettings
    from dpbench.run.progress import make_progress
    from dpbench.run.runner import RunInputError, RunRequest, execute

    if not math.isfinite(epsilon):
        raise click.UsageError("--eps must be finite: there is nothing to audit in a non-private run")
    try:
        settings = AuditSettings(canaries=canaries, guesses_in=guesses, guesses_out=guesses)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    request = RunRequest(method=method, pair=pair, epsilon=epsilon, delta=delta, seed=seed, preset=preset, out=out,
                         device=device, cache_dir=cache_dir, data_root=data_root, evaluators=[],
                         overrides=dict(_parse_override(o) for o in overrides), audit=settings)
    registry = load_registry()
    _report_broken_plugins(registry)
    try:
        with make_progress() as progress:
            outcome = execute(registry, request, progress)
    except (UnknownNameError, RunInputError) as exc:
        raise click.UsageError(str(exc)) from None
    except DataMissingError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    record = outcome.record
    if not outcome.ok:
        click.echo(f"Error: audit run failed: {record['error']['type']}: {record['error']['message']}", err=True)
        sys.exit(1)
    result = record["audit"]
    if as_json:
        click.echo(json.dumps(_jsonable({**result, "record": str(outcome.record_path)}), indent=2))
    else:
        click.echo(f"{method} on {pair}: claimed ε = {epsilon:g}, empirical lower bound ε ≥ "
                   f"{result['epsilon_lower_bound']:.3f} (95%), {result['correct_guesses']}/{result['guesses']} "
                   f"guesses right with {result['canaries']} canaries; the largest bound this audit can give is "
                   f"{result['max_lower_bound']:.2f}\nrecord: {outcome.record_path}")
    sys.exit(0 if result["epsilon_lower_bound"] <= epsilon else 1)


def _download(spec, data_root) -> None:
    """Fetch what the pair can fetch; a failed download is missing data (exit 2), not a crash."""
    if not spec.download:
        return
    try:
        spec.download(data_root)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; torchvision raises RuntimeError on bad files
        raise DataMissingError(f"could not download the files of pair '{spec.name}' ({type(exc).__name__}: {exc}). "
                               f"Put them under the data root by hand; `dpbench data check --pair {spec.name}` "
                               "lists the exact paths.") from exc


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _print_result(record: dict, path: Path) -> None:
    console = _stdout()
    table = Table(title=f"{record['method']['name']} on {record['pair']['name']}, eps={record['privacy']['epsilon_target']}, seed {record['seed']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, metric in record["metrics"].items():
        arrow = "↑" if metric["higher_is_better"] else "↓"
        suffix = " (reference)" if metric.get("reference") else ""
        table.add_row(f"{name} {arrow}{suffix}", f"{metric['value']:.4g}")
    privacy = record["privacy"]
    if "epsilon" in privacy:
        table.add_row("epsilon (recomputed)", f"{privacy['epsilon']:.4g}")
        for i, stage in enumerate(privacy.get("stages", [])):
            table.add_row(f"stage {i}: sigma / C / q / steps",
                          f"{stage['noise_multiplier']:.4g} / {stage['max_grad_norm']} / {stage['sample_rate']:.4g} / {stage['steps']}")
    cost = record.get("cost", {})
    for stage, seconds in cost.get("wall_seconds", {}).items():
        table.add_row(f"wall s: {stage}", f"{seconds:.1f}")
    if "peak_memory_mb" in cost:
        table.add_row(f"peak memory MB ({cost['peak_memory_kind']})", f"{cost['peak_memory_mb']:.0f}")
        table.add_row("trainable params", f"{cost['trainable_parameters']:,} ({cost['trainable_fraction']:.2%})")
    console.print(table)
    console.print(f"record: {path}  status: {record['status']}")


def _any_pair(registry):
    """Settings can depend on the pair (e.g. sample counts); `list` shows them for the first registered pair."""
    return registry.pairs[sorted(registry.pairs)[0]] if registry.pairs else None


def _report_broken_plugins(registry) -> None:
    for plugin in registry.plugins:
        if plugin.error:
            click.echo(f"warning: plugin '{plugin.name}' ({plugin.module}) failed to load and was skipped: {plugin.error}", err=True)


@main.command("list")
@click.argument("kind", type=click.Choice(["methods", "pairs", "evaluators", "scopes", "backbones"]))
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def list_(kind, as_json):
    """List registered methods, pairs, evaluators, scopes or backbones (methods with --json: every setting's
    type, default and help).

    \b
    Examples:
      dpbench list methods
      dpbench list pairs --json
      dpbench list methods --json     # settings with type, default and help
    """
    registry = load_registry()
    _report_broken_plugins(registry)
    rows = []
    for name, obj in sorted(getattr(registry, kind).items()):
        origin = registry.origin.get(f"{kind[:-1]}:{name}")
        row = {"name": name, "description": obj.description, "plugin": origin.name if origin else None}
        if kind == "methods":
            row.update(produces=obj.produces, reference=obj.reference)
            if as_json:
                row["settings"] = describe(obj.settings("default", _any_pair(registry)))
        elif kind == "pairs":
            row.update(image_size=obj.image_size, channels=obj.channels, num_classes=obj.num_classes)
        elif kind == "evaluators":
            row.update(applies_to=list(obj.applies_to))
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=kind)
    for column in rows[0].keys() if rows else ["name"]:
        table.add_column(column)
    for row in rows:
        table.add_row(*[str(v) for v in row.values()])
    _stdout().print(table)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def plugins(as_json):
    """List loaded plugins with their distribution, version and what they registered (or why they failed)."""
    registry = load_registry()
    rows = [{"name": p.name, "module": p.module, "distribution": p.distribution, "version": p.version,
             "status": "error" if p.error else "ok", "error": p.error, "provides": p.provides} for p in registry.plugins]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="dpbench plugins")
    for column in ("name", "distribution", "version", "status", "provides"):
        table.add_column(column)
    for row in rows:
        status = f"[red]error: {row['error']}[/]" if row["error"] else "ok"
        table.add_row(row["name"], str(row["distribution"]), str(row["version"]), status, ", ".join(row["provides"]))
    _stdout().print(table)


@main.group()
def data() -> None:
    """Check the real datasets' files.

    \b
    Examples:
      dpbench data check
      dpbench data check --pair svhn-mnist --data-root ~/datasets
      dpbench data overlap --pair digits-mnist --json
    """


@data.command("overlap")
@click.option("--pair", "pair_name", required=True, help="Pair whose splits are compared.")
@click.option("--data-root", default=None, envvar=DATA_ROOT_ENV, show_envvar=True, help="Folder with the datasets' files.")
@click.option("--cache-dir", default=".dpbench-cache", envvar=CACHE_ENV, show_envvar=True, show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Where the result is cached, by data digest.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def data_overlap(pair_name, data_root, cache_dir, as_json):
    """Find near-duplicates between public and private-train, public and private-test, private-train and
    private-test, and inside private-train (perceptual hash, then thumbnail correlation; README, "Overlap").
    Exits 0 when public and private share no near-duplicate, 1 when they do, 2 on bad input."""
    from dpbench.data.overlap import cached_overlap

    registry = load_registry()
    _report_broken_plugins(registry)
    try:
        spec = registry.pair(pair_name)
    except UnknownNameError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        result = cached_overlap(spec.name, *_splits_and_digest(spec, data_root), cache_dir)
    except DataMissingError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps({"pair": spec.name, **result}, indent=2))
    else:
        click.echo(f"pair {spec.name!r}: {result['method']}; Hamming <= {result['threshold']}, "
                   f"correlation >= {result['min_correlation']}")
        for name, counts in result["comparisons"].items():
            examples = ", ".join(f"({a}, {b})" for a, b, _ in counts["examples"])
            click.echo(f"  {name:30} {counts['near_duplicates']:6} near-duplicates, {counts['images_matched']} images"
                       f" matched, {counts['hash_candidates']} hash candidates" + (f"; e.g. {examples}" if examples else ""))
    shared = sum(c["near_duplicates"] for n, c in result["comparisons"].items() if n.startswith("public~"))
    sys.exit(1 if shared else 0)


@data.command("check")
@click.option("--pair", "pair_name", default=None, help="Only this pair (default: every pair).")
@click.option("--data-root", default=None, envvar=DATA_ROOT_ENV, show_envvar=True, help="Folder with the datasets' files.")
@click.option("--cache-dir", default=".dpbench-cache", envvar=CACHE_ENV, show_envvar=True, show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Where overlap counts are cached.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def data_check(pair_name, data_root, cache_dir, as_json):
    """Report, per pair, which files are present, missing or corrupt, with the exact expected paths, and for a
    usable pair its near-duplicate counts between splits. Exits 0 when every checked pair is usable, 1
    otherwise."""
    from dpbench.data.file_report import format_report, resolve_data_root

    registry = load_registry()
    _report_broken_plugins(registry)
    try:
        pairs = [registry.pair(pair_name)] if pair_name else [registry.pairs[n] for n in sorted(registry.pairs)]
    except UnknownNameError as exc:
        raise click.UsageError(str(exc)) from None
    root = resolve_data_root(data_root)
    report, usable = [], True
    for pair in pairs:
        statuses = pair.check_files(data_root) if pair.check_files else []
        ok = all(s.status == "present" for s in statuses)
        usable &= ok
        overlap = _overlap_counts(pair, data_root, cache_dir) if ok else None
        report.append({"pair": pair.name, "ready": ok, "needs_files": bool(pair.check_files),
                       "files": [{"path": s.path, "status": s.status, "detail": s.detail} for s in statuses],
                       "overlap": overlap})
        if not as_json:
            text = format_report(pair.name, root, statuses, []) if statuses else f"pair {pair.name!r}: embedded, needs no files"
            if overlap is not None:
                text += "\n  near-duplicates: " + ", ".join(f"{k} {v}" for k, v in overlap.items())
            click.echo(text + ("\n  => ready" if ok else "\n  => NOT ready") + "\n")
    if as_json:
        click.echo(json.dumps(report, indent=2))
    sys.exit(0 if usable else 1)


def _splits_and_digest(spec, data_root) -> tuple[dict, str]:
    """The pair's three image splits by name, and the digest of its data."""
    from dpbench.run.runner import data_digest

    pair_data = spec.load(data_root)
    return ({"public": pair_data.public_train.images, "private_train": pair_data.private_train.images,
             "private_test": pair_data.private_test.images}, data_digest(pair_data))


def _overlap_counts(spec, data_root, cache_dir) -> dict | None:
    """The pair's near-duplicate counts (cached by data digest); None when its data cannot be read."""
    from dpbench.data.overlap import cached_overlap, overlap_summary

    try:
        splits, digest = _splits_and_digest(spec, data_root)
    except Exception as exc:  # the file report above already names what is wrong
        click.echo(f"  (overlap not computed: {type(exc).__name__}: {exc})", err=True)
        return None
    return overlap_summary(cached_overlap(spec.name, splits, digest, cache_dir))


@main.command()
@click.option("--pair", required=True, help="Pair whose public split trains the backbone.")
@click.option("--backbone", default="pixel", show_default=True, help="Registered backbone (see `dpbench list backbones`).")
@click.option("--preset", default="default", show_default=True, type=click.Choice(["default", "smoke", "paper"]))
@click.option("--output", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the weights and recipe (default: the backbone plugin's shipped-weights folder).")
@click.option("--data-root", default=None, envvar=DATA_ROOT_ENV, show_envvar=True, help="Folder with the real datasets' files.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--cache-dir", default=".dpbench-cache", envvar=CACHE_ENV, show_envvar=True, show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Pre-training cache.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def pretrain(pair, backbone, preset, output, data_root, device, cache_dir, as_json):
    """Pre-train PAIR's public backbone by its recipe (public data only) and write it with the recipe beside it.

    This is how the shipped backbones are made; it prints how long training took.

    \b
    Examples:
      dpbench pretrain --pair digits-mnist
      dpbench pretrain --pair digits-mnist --preset smoke --output /tmp/weights --json
    """
    from dpbench.pretrain.export import export_backbone
    from dpbench.run.progress import make_progress

    registry = load_registry()
    _report_broken_plugins(registry)
    try:
        with make_progress() as progress:
            summary = export_backbone(registry, pair=pair, backbone=backbone, preset=preset, output=output,
                                      cache_dir=cache_dir, device=device, data_root=data_root, progress=progress)
    except UnknownNameError as exc:
        raise click.UsageError(str(exc)) from None
    except NotImplementedError as exc:
        raise click.UsageError(str(exc)) from None
    except DataMissingError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        trained = summary["train_seconds"]
        how = (f"training took {trained:.0f} s" if trained is not None else "training time not recorded")
        if trained is None or summary["seconds"] < trained:
            how += f" (reused the local cache entry; this command took {summary['seconds']:.0f} s)"
        click.echo(f"pre-trained {backbone} for {pair} ({preset}): {how}; wrote " + ", ".join(summary["files"]))


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--evaluator", "evaluators", multiple=True, help="Evaluator to run (repeatable; default: all that score generators).")
@click.option("--data-root", default=None, envvar=DATA_ROOT_ENV, show_envvar=True, help="Folder with the real datasets' files.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--cache-dir", default=".dpbench-cache", envvar=CACHE_ENV, show_envvar=True, show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Inception weights and FID statistics cache.")
@click.option("--json", "as_json", is_flag=True, help="Print the updated record as JSON on stdout.")
def evaluate(run_dir, evaluators, data_root, device, cache_dir, as_json):
    """Re-score a finished generator run from its synthetic.npz (no sampling) and update its record atomically.

    \b
    Examples:
      dpbench evaluate runs/digits-mnist/dp-loda/default-1a2b3c4d5e/eps10/seed0
      dpbench evaluate RUN_DIR --evaluator fid --json
    """
    from dpbench.run.progress import make_progress
    from dpbench.run.rescore import rescore
    from dpbench.run.runner import RunInputError

    registry = load_registry()
    _report_broken_plugins(registry)
    try:
        with make_progress() as progress:
            record = rescore(registry, run_dir, progress, evaluators=list(evaluators) or None, data_root=data_root,
                             device=device, cache_dir=cache_dir)
    except (UnknownNameError, RunInputError) as exc:
        raise click.UsageError(str(exc)) from None
    except (DataMissingError, FileNotFoundError, ValueError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(_jsonable(record), indent=2))
    else:
        _print_result(record, run_dir / "record.json")


@main.command()
@click.option("--pair", required=True, help="Pair whose PUBLIC split the proxy task is cut from.")
@click.option("--method", "methods", multiple=True,
              help="Method to tune (repeatable; default: every method that trains on private data).")
@click.option("--eps", "epsilons", multiple=True, type=float, default=(10.0,), show_default=True,
              help="Target epsilon of the trials (repeatable).")
@click.option("--delta", default=1e-5, show_default=True, type=float, help="Target delta, used exactly as given.")
@click.option("--preset", default="default", show_default=True, type=click.Choice(["default", "smoke", "paper"]))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--out", default="runs/tune", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the trials' records and the tune-<pair>-<preset>-eps<E>.json summaries.")
@click.option("--data-root", default=None, envvar=DATA_ROOT_ENV, show_envvar=True, help="Folder with the real datasets' files.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--cache-dir", default=".dpbench-cache", envvar=CACHE_ENV, show_envvar=True, show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Pre-training cache (the tuning backbone too).")
@click.option("--classifier-fits", default=1, show_default=True, type=click.IntRange(min=1),
              help="Score a generator's trial by the mean accuracy of this many classifier fits on its synthetic set "
                   "(one fit moves a proxy trial by several points).")
@click.option("--json", "as_json", is_flag=True, help="Print the summaries as JSON on stdout.")
def tune(pair, methods, epsilons, delta, preset, seed, out, data_root, device, cache_dir, classifier_fits, as_json):
    """Choose each method's hyperparameters on a proxy task cut from the PUBLIC split; no private data is used.

    The public split is cut into a backbone part (pre-trains the tuning backbone), a proxy-private part and a
    proxy-test part, both domain-shifted. Every method gets the same coordinate search of 9 trials (clip norm, lr,
    schedule at equal compute, guidance), each a DP run at the target ε with the real run's sample rate, scored by
    downstream accuracy on the proxy test split. See README, "How hyperparameters are chosen".

    \b
    Examples:
      dpbench tune --pair digits-mnist
      dpbench tune --pair digits-mnist --method dp-loda --eps 1 --eps 10 --json
      dpbench tune --pair digits-mnist --preset smoke --out /tmp/tune
      dpbench tune --pair digits-mnist --classifier-fits 5
    """
    from dpbench.run.progress import make_progress
    from dpbench.run.runner import RunInputError, validate_budget
    from dpbench.tune.protocol import tune_method
    from dpbench.tune.proxy import ProxySplit
    from dpbench.tune.report import trials_table, tune_path, write_tuning

    registry = load_registry()
    _report_broken_plugins(registry)
    try:
        registry.pair(pair)
        names = list(methods) or [m.name for m in registry.methods.values() if m.trains_on_private]
        for name in names:
            registry.method(name)
        for epsilon in epsilons:
            validate_budget(epsilon, delta)
    except (UnknownNameError, RunInputError) as exc:
        raise click.UsageError(str(exc)) from None
    split, documents, failed = ProxySplit(), [], []
    console = Console(stderr=True)
    for epsilon in epsilons:
        results = []
        for name in names:
            try:
                with make_progress() as progress:
                    result = tune_method(registry, method=name, pair=pair, epsilon=epsilon, delta=delta, out=out,
                                         cache_dir=cache_dir, device=device, data_root=data_root,
                                         progress=progress, preset=preset, seed=seed, split=split,
                                         classifier_fits=classifier_fits)
            except RunInputError as exc:
                raise click.UsageError(str(exc)) from None
            except DataMissingError as exc:
                click.echo(f"Error: {exc}", err=True)
                sys.exit(2)
            console.print(trials_table(result))
            if any(t.score is not None for t in result.trials):
                results.append(result)
            else:
                failed.append(f"{name} at ε = {epsilon:g}: every trial failed ({result.trials[0].error})")
        path = tune_path(out, pair, preset, epsilon)
        documents.append(write_tuning(path, pair=pair, preset=preset, epsilon=epsilon, delta=delta, seed=seed,
                                      split=split, results=results, classifier_fits=classifier_fits))
        console.print(f"wrote {path}")
    if as_json:
        click.echo(json.dumps(documents, indent=2, default=str))
    for line in failed:
        click.echo(f"Error: {line}", err=True)
    sys.exit(1 if failed else 0)


@main.command()
@click.option("--runs", "runs", multiple=True, default=["runs"], show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="A run root to collect from (repeatable: the roots are merged, each run counted once).")
@click.option("--output", default="leaderboard", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "fmt", default="md", show_default=True, type=click.Choice(["md", "html", "csv"]),
              help="LEADERBOARD.md with its plots, one self-contained LEADERBOARD.html, or LEADERBOARD.csv.")
def leaderboard(runs, output, fmt):
    """Merge the completed records under every RUNS root into OUTPUT/records/ (record.json and samples.png, never
    the synthetic sets; a run found under several roots counts once), then rebuild the leaderboard from
    OUTPUT/records/ alone: each record's ε recomputed, per pair a privacy-utility plot and a cost plot in
    OUTPUT/plots/, and a table per ε of mean ± 95% CI over seeds. `dpbench tune`'s proxy trials are left out.

    \b
    Examples:
      dpbench leaderboard --runs runs --output leaderboard
      dpbench leaderboard --runs node1/runs --runs node2/runs   # merge the nodes of a sweep
      dpbench leaderboard --runs leaderboard/records     # re-render from the committed records only
      dpbench leaderboard --runs leaderboard/records --format html
    """
    from dpbench.report.leaderboard import build_leaderboard

    registry = load_registry()
    _report_broken_plugins(registry)
    path = build_leaderboard(list(runs), output, list(registry.published.values()), fmt)
    click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
