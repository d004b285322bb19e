"""`dpbench compare`, kept beside dpbench/cli.py (which stays within its line budget) and registered there."""
from __future__ import annotations

from pathlib import Path

import click

from dpbench.cli_options import FOLDER, echo_json, exit_codes, json_option

EXAMPLES = """
\b
Examples:
  dpbench compare runs/digits-mnist/dp-loda/default-5e1054b95f/eps10/seed0
  dpbench compare RUN_DIR --against other/leaderboard/records --json
"""


@click.command(epilog=EXAMPLES)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--against", default=Path("leaderboard/records"), show_default=True, type=FOLDER,
              help="Folder of records to compare with (default: the committed leaderboard's).")
@json_option(help="Print the comparison as JSON on stdout.")
@exit_codes(missing=(FileNotFoundError, ValueError))
def compare(run_dir, against, as_json):
    """Place the run in RUN_DIR against the records of --against at its pair and ε: where it ranks, its difference
    to each method there (with the method's 95% interval where it has seeds), and which lines are stale (other
    code or other data digest)."""
    from dpbench.report.compare import compare_run, comparison_text

    result = compare_run(run_dir, against)
    echo_json(result) if as_json else click.echo(comparison_text(result))
