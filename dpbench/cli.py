"""The dpbench command line. Shared options and the one error-to-exit-code mapping (`exit_codes`) live in
dpbench/cli_options.py; torch, Opacus and the plugins are imported inside commands, so `dpbench --help` loads none."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from dpbench.cli_options import (
    LIST_HELP, SUBMITIT_CLUSTER_ENV, cache_dir_option, cap_options, comma_text, data_root_option, delta_option,
    device_option, echo_json, evaluator_option, examples, executor_options, exit_codes, fail, json_option,
    leaderboard_options, list_option, load_plugins, max_steps_option, out_folder, out_option, out_with_old_name,
    parse_overrides, preset_option, print_method_sheet, print_rich, run_options, seed_option, single_run_options,
    table,
)
from dpbench.cli_compare import compare

__all__ = ["main", "SUBMITIT_CLUSTER_ENV"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=examples("main"))
@click.version_option(package_name="dpbench")
def main() -> None:
    """Benchmark differentially private fine-tuning of diffusion models."""


@main.command(epilog=examples("run"))
@click.option("--method", required=True, help="Method name (see `dpbench list methods`).")
@click.option("--pair", required=True, help="Public->private dataset pair (see `dpbench list pairs`).")
@click.option("--eps", "epsilon", required=True, type=float, help="Target epsilon (> 0); 'inf' for a non-private run; 0 for public-only.")
@seed_option()
@run_options()
@evaluator_option()
@single_run_options()
@cap_options()
@json_option(help="Print the record as JSON on stdout.")
@exit_codes()
def run(method, pair, epsilon, delta, seed, preset, out, device, evaluators, overrides, data_root, download, cache_dir,
        rebuild_backbone, allow_large_delta, rng, secure_rng, resume, checkpoint_every, as_json, nproc,
        max_steps=None, max_samples=None, max_batch=None):
    """Fine-tune METHOD on PAIR under (EPS, DELTA)-DP, evaluate it, and write its record."""
    from dpbench.data.check import download_pair
    from dpbench.run.progress import make_progress
    from dpbench.run.runner import RunRequest, execute
    from dpbench.run.show_result import print_result

    request = RunRequest(method=method, pair=pair, epsilon=epsilon, delta=delta, seed=seed, preset=preset, out=out,
                         device=device, cache_dir=cache_dir, data_root=data_root, evaluators=list(evaluators) or None,
                         overrides=parse_overrides(overrides), rebuild_backbone=rebuild_backbone,
                         allow_large_delta=allow_large_delta, rng="secure" if secure_rng else rng, resume=resume,
                         checkpoint_every=checkpoint_every, nproc=nproc, max_steps=max_steps, max_samples=max_samples,
                         max_batch=max_batch)
    registry = load_plugins()
    if download:
        download_pair(registry.pair(pair), data_root)
    with make_progress() as progress:
        outcome = execute(registry, request, progress)
    if outcome.record_path is None:  # a data-parallel rank other than 0: rank 0 reports the run
        sys.exit(0 if outcome.ok else 1)
    echo_json(outcome.record) if as_json else print_result(outcome.record, outcome.record_path)
    if not outcome.ok:
        fail(f"run failed: {outcome.record['error']['type']}: {outcome.record['error']['message']}", 1)


@main.command(epilog=examples("sweep"))
@list_option("--methods", required=True, help="Method names. " + LIST_HELP.format("methods"))
@list_option("--pairs", required=True, help="Pair names. " + LIST_HELP.format("pairs"))
@list_option("--eps", "epsilons", required=True,
             help="Target epsilons; 'inf' for non-private runs. " + LIST_HELP.format("eps"))
@list_option("--seeds", default=("0",), show_default=True, help="Seeds. " + LIST_HELP.format("seeds"))
@run_options(set_help="Override a setting of every method of the sweep that has it (repeatable).")
@click.option("--references", is_flag=True,
              help="Add, per pair and seed, the public-only reference runs (eps 0) and each method at eps = inf.")
@evaluator_option()
@click.option("--retry-failed", is_flag=True, help="Run again the cells whose record says failed (skipped otherwise).")
@click.option("--rerun-stale", is_flag=True,
              help="Run again the cells whose completed record came from another git commit or other data (listed, "
                   "and kept, otherwise); the old record moves to history/ beside the new one.")
@click.option("--dry-run", is_flag=True, help="Print the cells and what each would cost; run and write nothing.")
@executor_options()
@json_option(help="Print the summary (or the dry run's cells) as JSON on stdout.")
@exit_codes()
def sweep(methods, pairs, epsilons, seeds, delta, preset, overrides, references, evaluators, out, device, data_root,
          cache_dir, retry_failed, rerun_stale, dry_run, executor, jobs, slurm_partition, slurm_time, gpus_per_node,
          cpus_per_task, slurm_array_parallelism, as_json):
    """Run a grid of METHODS x PAIRS x EPS x SEEDS, each cell an ordinary `dpbench run` (same records, same
    config hash), locally or as one Slurm array job. Resumable: a cell whose completed record exists is skipped;
    a failed one is run again only with --retry-failed, a stale one (another commit's or other data's, listed in
    any case) only with --rerun-stale. One failing cell never stops the others. Exit 0 only when every cell has a
    completed record, 1 otherwise, 2 on bad input (nothing run, nothing written)."""
    from dpbench.run.progress import make_progress
    from dpbench.run.runner import RunRequest
    from dpbench.sweep.driver import SweepRequest, plan_sweep, timed_sweep
    from dpbench.sweep.grid_spec import parse_epsilons, parse_names, parse_seeds
    from dpbench.sweep.report import dry_run_document, dry_run_table
    from dpbench.sweep.slurm import SlurmOptions, parse_slurm_time
    from dpbench.sweep.summary import exit_code, summary_document, summary_table

    registry = load_plugins()
    template = RunRequest(method="", pair="", epsilon=0.0, delta=delta, preset=preset, out=out, device=device,
                          cache_dir=cache_dir, data_root=data_root, evaluators=list(evaluators) or None)
    request = SweepRequest(
        methods=parse_names(comma_text(methods), "--methods"), pairs=parse_names(comma_text(pairs), "--pairs"),
        epsilons=parse_epsilons(comma_text(epsilons)), seeds=parse_seeds(comma_text(seeds)), template=template,
        overrides=parse_overrides(overrides), references=references, retry_failed=retry_failed,
        rerun_stale=rerun_stale, executor=executor, jobs=jobs,
        submitit_cluster=os.environ.get(SUBMITIT_CLUSTER_ENV, "slurm"),
        slurm=SlurmOptions(partition=slurm_partition, timeout_min=parse_slurm_time(slurm_time),
                           gpus_per_node=gpus_per_node, cpus_per_task=cpus_per_task,
                           array_parallelism=slurm_array_parallelism))
    plans = plan_sweep(registry, request)
    if dry_run:
        echo_json(dry_run_document(plans, rerun_stale)) if as_json else print_rich(dry_run_table(plans, rerun_stale))
        return
    with make_progress() as progress:
        outcomes, wall_seconds = timed_sweep(plans, request, progress)
    echo_json(summary_document(outcomes, wall_seconds)) if as_json else print_rich(summary_table(outcomes, wall_seconds))
    sys.exit(exit_code(outcomes))


@main.command(epilog=examples("audit"))
@click.option("--method", required=True, help="Method whose DP training is audited.")
@click.option("--pair", required=True, help="Pair whose private split gets the canaries.")
@click.option("--eps", "epsilon", required=True, type=click.FloatRange(min=0, min_open=True),
              help="The claimed ε (finite).")
@seed_option()
@click.option("--canaries", default=1000, show_default=True, type=click.IntRange(min=2), help="Canary count m.")
@click.option("--guesses", default=50, show_default=True, type=click.IntRange(min=1),
              help="Guesses on each side: 'in' for the top k scores, 'out' for the bottom k.")
@run_options(out_help="Run root the audit's record (kind `audit`) is written under.")
@json_option(help="Print the result as JSON on stdout.")
@exit_codes()
def audit(method, pair, epsilon, delta, seed, preset, overrides, canaries, guesses, out, device, data_root, cache_dir,
          as_json):
    """Audit a method's DP training empirically: an ε lower bound from one training run with white-box
    gradient canaries sampled, clipped and noised by the engine itself, by Steinke, Nasr & Jagielski 2023 and by
    the f-DP analysis of Mahloujifar et al. 2025. The audit trains its own model, with the canaries in it, and
    writes a record of kind `audit`; a bound above the audited stage's ε means the training leaks more than it
    claims. Exit 0 when the bound is at most the claim, 1 when it exceeds it (or the run failed), 2 on bad input."""
    from dpbench.run.audit_report import audit_settings, audit_summary, exceeds_claim
    from dpbench.run.progress import make_progress
    from dpbench.run.runner import RunRequest, execute

    request = RunRequest(method=method, pair=pair, epsilon=epsilon, delta=delta, seed=seed, preset=preset, out=out,
                         device=device, cache_dir=cache_dir, data_root=data_root, evaluators=[],
                         overrides=parse_overrides(overrides), audit=audit_settings(epsilon, canaries, guesses))
    with make_progress() as progress:
        outcome = execute(load_plugins(), request, progress)
    record = outcome.record
    if not outcome.ok:
        fail(f"audit run failed: {record['error']['type']}: {record['error']['message']}", 1)
    result = record["audit"]
    if as_json:
        echo_json({**result, "record": str(outcome.record_path)})
    else:
        click.echo(audit_summary(method, pair, epsilon, result, outcome.record_path))
    sys.exit(1 if exceeds_claim(result, epsilon) else 0)


@main.command("list", epilog=examples("list"))
@click.argument("kind", type=click.Choice(["methods", "pairs", "evaluators", "scopes", "backbones"]))
@json_option(help="Print JSON on stdout (methods: with every setting's type, default and help).")
def list_(kind, as_json):
    """List registered methods, pairs, evaluators, scopes or backbones (methods with --json: every setting's
    type, default and help)."""
    from dpbench.api.registry import listing

    rows = listing(load_plugins(), kind, with_settings=as_json)
    if as_json:
        return echo_json(rows)
    print_rich(table(kind, rows[0].keys() if rows else ["name"], [[str(v) for v in r.values()] for r in rows]))


@main.command(epilog=examples("show"))
@click.argument("method")
@click.option("--pair", default=None, help="Pair the settings are shown for (default: the first registered pair).")
@json_option(help="Print the method, its presets and its settings as JSON on stdout.")
@exit_codes()
def show(method, pair, as_json):
    """Show METHOD's settings (name, type, default under each preset, help, constraints) and its presets."""
    from dpbench.api.registry import method_sheet

    registry = load_plugins()
    sheet = method_sheet(registry, method, registry.pair(pair) if pair else None)
    if as_json:
        return echo_json(sheet)
    print_method_sheet(sheet)


@main.command()
@json_option()
def plugins(as_json):
    """List loaded plugins with their distribution, version and what they registered (or why they failed)."""
    from dpbench.api.registry import plugin_rows

    rows = plugin_rows(load_plugins(report=False))
    if as_json:
        return echo_json(rows)
    print_rich(table("dpbench plugins", ("name", "distribution", "version", "status", "provides"),
                      [[r["name"], str(r["distribution"]), str(r["version"]),
                        f"[red]error: {r['error']}[/]" if r["error"] else "ok", ", ".join(r["provides"])] for r in rows]))


@main.group(epilog=examples("data"))
def data() -> None:
    """Check the real datasets' files."""


@data.command("overlap")
@click.option("--pair", "pair_name", required=True, help="Pair whose splits are compared.")
@data_root_option()
@cache_dir_option(help="Where the result is cached, by data digest.")
@json_option()
@exit_codes()
def data_overlap(pair_name, data_root, cache_dir, as_json):
    """Find near-duplicates between public and private-train, public and private-test, private-train and
    private-test, and inside private-train (perceptual hash, then thumbnail correlation; docs/privacy.md).
    Exits 0 when public and private share no near-duplicate, 1 when they do, 2 on bad input."""
    from dpbench.data.check import overlap_text, public_private_shared, splits_and_digest
    from dpbench.data.overlap import cached_overlap

    spec = load_plugins().pair(pair_name)
    result = cached_overlap(spec.name, *splits_and_digest(spec, data_root), cache_dir)
    echo_json({"pair": spec.name, **result}) if as_json else click.echo(overlap_text(spec.name, result))
    sys.exit(1 if public_private_shared(result) else 0)


@data.command("check")
@click.option("--pair", "pair_name", default=None, help="Only this pair (default: every pair).")
@data_root_option()
@cache_dir_option(help="Where overlap counts are cached.")
@json_option()
@exit_codes()
def data_check(pair_name, data_root, cache_dir, as_json):
    """Report, per pair, which files are present, missing or corrupt, with the exact expected paths, and for a
    usable pair its near-duplicate counts between splits. Exits 0 when every checked pair is usable, 1
    otherwise."""
    from dpbench.data.check import check_pairs

    report, usable = check_pairs(load_plugins(), pair_name, data_root, cache_dir, echo=None if as_json else click.echo,
                                 warn=lambda line: click.echo(line, err=True))
    if as_json:
        echo_json(report)
    sys.exit(0 if usable else 1)


@main.command(epilog=examples("pretrain"))
@click.option("--pair", required=True, help="Pair whose public split trains the backbone.")
@click.option("--backbone", default="pixel", show_default=True, help="Registered backbone (see `dpbench list backbones`).")
@preset_option()
@out_with_old_name(None, "Folder for the weights and recipe (default: the backbone plugin's shipped-weights folder).")
@data_root_option()
@device_option()
@cache_dir_option(help="Pre-training cache.")
@max_steps_option(help="Cap every pre-training phase at N steps (a trial of a big preset; needs --out, never "
                        "written over the shipped weights). Recorded in the recipe.")
@json_option(help="Print a JSON summary on stdout.")
@exit_codes(usage=(NotImplementedError,))
def pretrain(pair, backbone, preset, out, output, data_root, device, cache_dir, as_json, max_steps=None):
    """Pre-train PAIR's public backbone by its recipe (public data only) and write it with the recipe beside it.

    This is how the shipped backbones are made; it prints how long training took."""
    from dpbench.pretrain.export import CappedExportError, export_backbone, export_summary_line
    from dpbench.run.progress import make_progress

    registry = load_plugins()
    with make_progress() as progress:
        try:
            summary = export_backbone(registry, pair=pair, backbone=backbone, preset=preset,
                                      output=out_folder(out, output), cache_dir=cache_dir, device=device,
                                      data_root=data_root, progress=progress, max_steps=max_steps)
        except CappedExportError as exc:
            raise click.UsageError(str(exc)) from None
    echo_json(summary) if as_json else click.echo(export_summary_line(summary, pair, backbone, preset))


@main.command(epilog=examples("evaluate"))
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@evaluator_option(help="Evaluator to run (repeatable or comma-separated; default: all that score generators).")
@data_root_option()
@device_option()
@cache_dir_option(help="Inception weights and FID statistics cache.")
@json_option(help="Print the updated record as JSON on stdout.")
@exit_codes(missing=(FileNotFoundError, ValueError))
def evaluate(run_dir, evaluators, data_root, device, cache_dir, as_json):
    """Re-score a finished generator run from its synthetic.npz (no sampling) and update its record atomically."""
    from dpbench.run.progress import make_progress
    from dpbench.run.rescore import rescore
    from dpbench.run.show_result import print_result

    registry = load_plugins()
    with make_progress() as progress:
        record = rescore(registry, run_dir, progress, evaluators=list(evaluators) or None, data_root=data_root,
                         device=device, cache_dir=cache_dir)
    echo_json(record) if as_json else print_result(record, run_dir / "record.json")


@main.command(epilog=examples("tune"))
@click.option("--pair", required=True, help="Pair whose PUBLIC split the proxy task is cut from.")
@list_option("--method", "methods",
             help="Method to tune (default: every method that trains on private data). " + LIST_HELP.format("method"))
@list_option("--eps", "epsilons", item=float, default=("10",), show_default=True,
             help="Target epsilon of the trials. " + LIST_HELP.format("eps"))
@delta_option()
@preset_option()
@seed_option(help="Seed of the trials (and of every classifier fit that scores them).")
@out_option(default="runs/tune", help="Folder for the trials' records and the tune-<pair>-<preset>-eps<E>.json summaries.")
@data_root_option()
@device_option()
@cache_dir_option(help="Pre-training cache (the tuning backbone too).")
@click.option("--classifier-fits", default=1, show_default=True, type=click.IntRange(min=1),
              help="Score a generator's trial by the mean accuracy of this many classifier fits on its synthetic set "
                   "(one fit moves a proxy trial by several points).")
@json_option(help="Print the summaries as JSON on stdout.")
@exit_codes()
def tune(as_json, **options):
    """Choose each method's hyperparameters on a proxy task cut from the PUBLIC split; no private data is used:
    9 DP trials per method at the target ε and the real run's sample rate, scored by downstream accuracy on a
    domain-shifted proxy test split (docs/methods.md, "How hyperparameters are chosen")."""
    from rich.console import Console

    from dpbench.run.progress import make_progress
    from dpbench.tune.run_all import TuneAll, tune_all

    documents, failed = tune_all(load_plugins(), TuneAll(**options), make_progress, Console(stderr=True).print)
    if as_json:
        echo_json(documents, default=str)
    for line in failed:
        click.echo(f"Error: {line}", err=True)
    sys.exit(1 if failed else 0)


@main.command(epilog=examples("leaderboard"))
@leaderboard_options()
def leaderboard(runs, out, output, compare_to, fmt):
    """Merge the completed records under every RUNS root into OUT/records/ (record.json and samples.png, never
    the synthetic sets; a run counts once, and nothing there is overwritten in place), then rebuild the
    leaderboard from OUT/records/ and the COMPARE_TO folders: each record's ε recomputed, per pair a
    privacy-utility and a cost plot in OUT/plots/, then the ranked tables of docs/leaderboard.md."""
    from dpbench.report.leaderboard import build_leaderboard

    path = build_leaderboard(list(runs), out_folder(out, output), list(load_plugins().published.values()), fmt,
                             compare_to=list(compare_to))
    click.echo(f"wrote {path}")


main.add_command(compare)  # dpbench/cli_compare.py
if __name__ == "__main__":
    main()
