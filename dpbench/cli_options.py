"""The options the `dpbench` commands share, declared once, and the one mapping from errors to exit codes.

Nothing here imports torch: `dpbench --help` must stay fast. The heavy modules are imported inside commands.
"""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable

import click

from dpbench.storage import CACHE_ENV, DATA_ROOT_ENV, default_cache_dir, default_leaderboard_dir

SUBMITIT_CLUSTER_ENV = "DPBENCH_SUBMITIT_CLUSTER"  # the submitit cluster of `sweep --executor slurm` (default slurm)
# the presets every method answers for (dpbench.api.types.PRESETS, which imports torch), in --help's order
PRESET_NAMES = ("default", "smoke", "paper")
DEVICES = ("auto", "cpu", "cuda")
FOLDER = click.Path(file_okay=False, path_type=Path)


def _option(*names: str, **kwargs: Any) -> Callable:
    """A click option whose help the caller may replace (each command says what the option means to it)."""
    default_help = kwargs.pop("help")

    def decorator(help: str | None = None, **overrides: Any) -> Callable:
        return click.option(*names, **{**kwargs, "help": help or default_help, **overrides})

    return decorator


# a callable default, resolved when the command runs, so $XDG_CACHE_HOME and $DPBENCH_CACHE set then are honoured
cache_dir_option = _option("--cache-dir", default=default_cache_dir, envvar=CACHE_ENV, show_envvar=True,
                           show_default="the user's cache folder, ~/.cache/dpbench on Linux", type=FOLDER,
                           help="Pre-training, Inception weights and FID statistics cache.")
data_root_option = _option("--data-root", default=None, envvar=DATA_ROOT_ENV, show_envvar=True,
                           help="Folder with the real datasets' files [default: data/ in the user's cache folder].")
json_option = _option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
device_option = _option("--device", default="auto", show_default=True, type=click.Choice(DEVICES),
                        help="Torch device: auto (a GPU when there is one), cpu or cuda (exit 2 when none).")
preset_option = _option("--preset", default="default", show_default=True, type=click.Choice(PRESET_NAMES),
                        help="Settings preset: smoke (seconds, a check), default (minutes on a CPU) or paper "
                             "(GPU-sized; the papers' schedules).")
seed_option = _option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
                      help="Seed of the run: data order, initialisation, Poisson sampling and the seeded DP noise.")
delta_option = _option("--delta", default=1e-5, show_default=True, type=float,
                       help="Target delta, used exactly as given.")
overrides_option = _option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                           help="Override a method setting (repeatable); VALUE is parsed by the setting's type.")
out_option = _option("--out", default="runs", show_default=True, type=FOLDER,
                     help="Run root: each run writes its record under OUT/<pair>/<method>/<preset-hash>/eps<E>/seed<S>.")


max_steps_option = _option("--max-steps", default=None, type=click.IntRange(min=1), metavar="N",
                           help="Cap every DP stage and every pre-training phase at N steps (a trial of a big "
                                "preset; sigma is calibrated for the capped steps). Hashed and recorded; unset, the "
                                "preset's steps.")
max_samples_option = _option("--max-samples", default=None, type=click.IntRange(min=1), metavar="N",
                             help="Cap the synthetic set at N images (FID/KID's and the downstream classifier's "
                                  "sample count), and the references and test split every score is computed against "
                                  "at their first N images. Hashed and recorded; unset, the preset's count.")


max_batch_option = _option("--max-batch", default=None, type=click.IntRange(min=1), metavar="N",
                           help="Cap every DP stage's expected batch size at N (a trial of a big preset on a "
                                "small machine; sigma is calibrated for the capped sample rate, and K augmentations "
                                "per example stay). Hashed and recorded; unset, the preset's batch sizes.")


def compose(*decorators: Callable) -> Callable:
    """Several option decorators as one, applied in the order given (the first is the first in --help)."""

    def decorator(function: Callable) -> Callable:
        for option in reversed(decorators):
            function = option(function)
        return function

    return decorator


def run_options(out_help: str | None = None, set_help: str | None = None) -> Callable:
    """What every training command (run, audit, sweep) says about a run besides its method, pair and ε."""
    return compose(delta_option(), preset_option(), overrides_option(help=set_help), out_option(help=out_help), device_option(),
                   data_root_option(), cache_dir_option())


def cap_options() -> Callable:
    """--max-steps, --max-samples and --max-batch: caps on a preset for a trial run (never a preset's defaults)."""
    return compose(max_steps_option(), max_samples_option(), max_batch_option())


def single_run_options() -> Callable:
    """`dpbench run`'s own options: where the data and backbone come from, the noise source, checkpoints, GPUs."""
    return compose(
        click.option("--download", is_flag=True,
                     help="Let torchvision fetch the pair's missing files first (needs a network)."),
        click.option("--rebuild-backbone", is_flag=True, help="Ignore shipped public backbones and pre-train them locally."),
        click.option("--allow-large-delta", is_flag=True,
                     help="Run even with delta >= 1/n_private (refused otherwise); the record and leaderboard mark it."),
        click.option("--rng", type=click.Choice(["seeded", "os-seeded", "secure"]), default="seeded", show_default=True,
                     help="Source of the DP noise and Poisson sampling: seeded from --seed (a reproducible simulation), "
                          "seeded from the OS, or os.urandom (cryptographically secure, for a release)."),
        click.option("--secure-rng", is_flag=True, help="Same as --rng secure."),
        click.option("--resume", is_flag=True, help="Continue a killed run from its checkpoints: same result, bit "
                                                    "for bit, and no step spent twice."),
        click.option("--checkpoint-every", default=50, show_default=True, type=click.IntRange(min=1),
                     help="DP steps between checkpoints (written owner-only in the run folder, deleted when it "
                          "completes)."),
        click.option("--nproc", default=1, show_default=True, type=click.IntRange(min=1),
                     help="Train data-parallel on N processes (one per GPU): relaunches this command under torchrun. "
                          "Same ε and ledger as one process; rank 0 writes the record."))


def executor_options() -> Callable:
    """Where `dpbench sweep` runs its cells: a local pool or one Slurm array job."""
    return compose(
        click.option("--executor", default="local", show_default=True, type=click.Choice(["local", "slurm"]),
                     help="local: a pool of --jobs processes; slurm: one array job through submitit."),
        click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1), help="Local worker processes."),
        click.option("--slurm-partition", default=None, help="Slurm partition of the array job."),
        click.option("--slurm-time", default="60", show_default=True, help="Time limit per cell: minutes or [D-]HH:MM:SS."),
        click.option("--gpus-per-node", default=0, show_default=True, type=click.IntRange(min=0),
                     help="GPUs per cell (Slurm); above 1 the cell trains data-parallel under torchrun, as `run --nproc`."),
        click.option("--cpus-per-task", default=None, type=click.IntRange(min=1), help="CPUs per cell."),
        click.option("--slurm-array-parallelism", default=16, show_default=True, type=click.IntRange(min=1),
                     help="At most this many cells run at once on Slurm."))


def out_with_old_name(default: str | None, help: str) -> Callable:
    """--out, and the --output of earlier releases (hidden) for pretrain and leaderboard; `out_folder` picks."""
    return compose(out_option(default=default, show_default=default is not None, help=help),
                   click.option("--output", default=None, hidden=True, type=FOLDER, help="Old name of --out."))


def leaderboard_options() -> Callable:
    """Where `dpbench leaderboard` reads and writes: never the committed leaderboard/ unless --out names it."""
    return compose(
        click.option("--runs", "runs", multiple=True, default=["runs"], show_default=True, type=FOLDER,
                     help="A run root to collect from (repeatable: the roots are merged, each run counted once)."),
        out_option(default=default_leaderboard_dir, show_default="leaderboard/ in the user's data folder, "
                   "~/.local/share/dpbench/leaderboard on Linux; the committed folder only as --out leaderboard",
                   help="Folder the leaderboard is written to: records/, plots/ and LEADERBOARD.*."),
        click.option("--output", default=None, hidden=True, type=FOLDER, help="Old name of --out."),
        click.option("--compare-to", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
                     help="A records folder (e.g. leaderboard/records) whose runs are shown beside yours as rows of "
                          "their own, read in place and never written (repeatable)."),
        click.option("--format", "fmt", default="md", show_default=True,
                     type=click.Choice(["md", "html", "csv", "sqlite"]),
                     help="LEADERBOARD.md with its plots, one self-contained LEADERBOARD.html, LEADERBOARD.csv, or "
                          "leaderboard.sqlite (every record as rows; schema in docs/record.md)."))


def out_folder(out: Path | None, output: Path | None) -> Path | None:
    if output is None:
        return out
    click.echo("warning: --output is now --out", err=True)
    return output


def split_commas(values: tuple[str, ...] | None) -> list[str]:
    """The items of a list option given as repeated flags, comma-separated, or both: ('a,b', 'c') -> a, b, c."""
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


def list_option(*names: str, item: click.ParamType | type = str, **kwargs: Any) -> Callable:
    """A list option: `--x a,b`, `--x a --x b` and `--x a,b --x c` all mean the same list."""
    item_type = click.types.convert_type(item)

    def convert(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple:
        return tuple(item_type.convert(part, param, ctx) for part in split_commas(values))

    return click.option(*names, multiple=True, callback=convert, **{"metavar": "LIST", **kwargs})


def evaluator_option(help: str = "Evaluator to run (repeatable or comma-separated; default: all that apply).") -> Callable:
    return list_option("--evaluator", "evaluators", help=help)


def comma_text(values: tuple) -> str:
    """A list option's items as the one comma-separated text the sweep's parsers read."""
    return ",".join(str(v) for v in values)


def parse_overrides(texts: tuple[str, ...]) -> dict[str, str]:
    """KEY=VALUE pairs; VALUE stays text here and is parsed by the setting's declared type."""
    overrides = {}
    for text in texts:
        if "=" not in text:
            raise click.BadParameter(f"'{text}' is not KEY=VALUE", param_hint="--set")
        key, raw = text.split("=", 1)
        overrides[key.strip()] = raw
    return overrides


LIST_HELP = "A list: comma-separated, repeated, or both (`a,b` = `a --{0} b`)."


def echo_json(value: Any, **kwargs: Any) -> None:
    from dpbench.run.show_result import jsonable

    click.echo(json.dumps(jsonable(value), indent=2, **kwargs))


def print_rich(renderable: Any) -> None:
    from rich.console import Console

    Console().print(renderable)


def table(title: str, columns, rows):
    from rich.table import Table

    result = Table(title=title)
    for column in columns:
        result.add_column(column)
    for row in rows:
        result.add_row(*row)
    return result


def print_method_sheet(sheet: dict) -> None:
    """`dpbench show`'s text: the method, its presets, and per setting its type, default under each preset and
    constraints on one line, its help indented below."""
    click.echo(f"{sheet['name']} ({sheet['produces']}, plugin {sheet['plugin']}): {sheet['description']}\n"
               f"reference: {sheet['reference']}\npresets: {', '.join(sheet['presets'])} (settings on pair "
               f"{sheet['pair']}; change one with --set KEY=VALUE)\n")
    fixed = {"name", "type", "help", "defaults"}
    rows = [["setting", "type", *sheet["presets"], "constraints"]]
    rows += [[s["name"], s["type"], *(repr(s["defaults"][p]) if p in s["defaults"] else "-" for p in sheet["presets"]),
              ", ".join(f"{k} {v}" for k, v in s.items() if k not in fixed)] for s in sheet["settings"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if i and sheet["settings"][i - 1]["help"]:
            click.echo(f"    {sheet['settings'][i - 1]['help']}")


def fail(message: str, code: int) -> None:
    """'Error: MESSAGE' on stderr and exit CODE."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def load_plugins(report: bool = True):
    """The registry of every installed plugin; a plugin that failed to load is named on stderr."""
    from dpbench.api.registry import load_registry

    registry = load_registry()
    for plugin in registry.plugins if report else ():
        if plugin.error:
            click.echo(f"warning: plugin '{plugin.name}' ({plugin.module}) failed to load and was skipped: "
                       f"{plugin.error}", err=True)
    return registry


def _input_errors() -> tuple[type, ...]:
    """Bad input (exit 2 with usage): imported only when an error is raised, so no command pays for them."""
    from dpbench.api.registry import UnknownNameError
    from dpbench.api.settings import SettingError
    from dpbench.run.environment import DeviceUnavailableError
    from dpbench.run.runner import RunInputError
    from dpbench.sweep.grid_spec import SweepInputError

    return UnknownNameError, RunInputError, SweepInputError, SettingError, DeviceUnavailableError


def exit_codes(usage: tuple[type, ...] = (), missing: tuple[type, ...] = ()) -> Callable:
    """Map a command's errors to exit codes, the same way for every command: bad input -> usage error (2);
    missing data (DataMissingError and `missing`) -> 'Error: ...' (2); a launched data-parallel run that ended
    without a record -> 'Error: ...' (1). `usage` adds errors a command treats as bad input."""

    def decorator(command: Callable) -> Callable:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except click.ClickException:
                raise
            except Exception as exc:
                from dpbench.data.types import DataMissingError
                from dpbench.run.runner import LaunchedRunError

                if isinstance(exc, _input_errors() + usage):
                    raise click.UsageError(str(exc)) from None
                if isinstance(exc, (DataMissingError, *missing)):
                    fail(str(exc), 2)
                if isinstance(exc, LaunchedRunError):
                    fail(str(exc), 1)
                raise

        return wrapper

    return decorator


# the examples each command's --help ends with
EXAMPLES = {
    "main": """\
  dpbench list methods
  dpbench show dp-loda
  dpbench run --method dp-loda --pair digits-mnist --eps 10
  dpbench sweep --methods dp-loda,dp-ldm --pairs digits-mnist --eps 1,5,10 --seeds 0,1,2 --jobs 2
  dpbench evaluate runs/digits-mnist/dp-loda/<preset-hash>/eps10/seed0
  dpbench leaderboard --runs runs
""",
    "run": """\
  dpbench run --method dp-loda --pair digits-mnist --eps 10
  dpbench run --method dp-loda --pair digits-mnist --eps 1 --seed 2 --preset smoke --json
  dpbench run --method dp-loda --pair digits-mnist --eps 10 --set rank=8 --set steps=300
  dpbench run --method dp-lora --pair digits-mnist --eps 10 --set noise_multiplicity=4
  dpbench run --method dp-loda --pair digits-mnist --eps inf        # the same method without DP
  dpbench run --method public-only --pair digits-mnist --eps 0     # the pre-trained model, no private data
  dpbench run --method dp-loda --pair digits-mnist --eps 10 --resume  # continue after a crash or a kill
  dpbench run --method dp-loda --pair digits-mnist --eps 10 --secure-rng  # noise from os.urandom, for a release
  dpbench run --method dp-loda --pair digits-mnist --eps 10 --nproc 4  # data-parallel on 4 GPUs (torchrun)
""",
    "sweep": """\
  dpbench sweep --methods dp-loda,dp-ldm --pairs digits-mnist --eps 1,5,10 --seeds 0,1,2 --jobs 2
  dpbench sweep --methods dp-loda --pairs digits-mnist --eps 1,10 --references --dry-run
  dpbench sweep --methods dp-loda,dp-lora --pairs digits-mnist --eps 10 --set rank=8 --retry-failed
  dpbench sweep --methods dp-loda --pairs digits-mnist --eps 1,5,10,inf --seeds 0,1,2 --preset paper \\
      --executor slurm --slurm-partition gpu --slurm-time 4:00:00 --gpus-per-node 1 --cpus-per-task 8
""",
    "audit": """\
  dpbench audit --method dp-sgd --pair digits-mnist --eps 1
  dpbench audit --method dp-loda --pair digits-mnist --eps 10 --canaries 2000 --guesses 100 --json
""",
    "list": """\
  dpbench list methods
  dpbench list pairs --json
  dpbench list methods --json     # settings with type, default and help
""",
    "show": """\
  dpbench show dp-loda
  dpbench show dp-loda --json
""",
    "data": """\
  dpbench data check
  dpbench data check --pair svhn-mnist --data-root ~/datasets
  dpbench data overlap --pair digits-mnist --json
""",
    "pretrain": """\
  dpbench pretrain --pair digits-mnist
  dpbench pretrain --pair digits-mnist --preset smoke --out /tmp/weights --json
""",
    "evaluate": """\
  dpbench evaluate runs/digits-mnist/dp-loda/default-1a2b3c4d5e/eps10/seed0
  dpbench evaluate RUN_DIR --evaluator fid --json
""",
    "tune": """\
  dpbench tune --pair digits-mnist
  dpbench tune --pair digits-mnist --method dp-loda --eps 1,10 --json
  dpbench tune --pair digits-mnist --preset smoke --out /tmp/tune
  dpbench tune --pair digits-mnist --classifier-fits 5
""",
    "leaderboard": """\
  dpbench leaderboard                                # your runs/, into the user's data folder
  dpbench leaderboard --compare-to leaderboard/records   # beside the committed rows (read only)
  dpbench leaderboard --runs node1/runs --runs node2/runs   # merge the nodes of a sweep
  dpbench leaderboard --format sqlite                # every record as rows of one SQLite file
  dpbench leaderboard --runs runs --out leaderboard  # write the committed leaderboard (maintainers)
""",
}


def examples(command: str) -> str:
    return "\n\b\nExamples:\n" + EXAMPLES[command]
