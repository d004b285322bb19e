"""Imports run one way: the stages a run calls (data, models, privacy, pretrain, finetune, eval, api) never import
the commands that drive runs (run, sweep, tune, report, cli), and no module imports another's private names."""
import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "dpbench"
LOWER = ("api", "data", "models", "privacy", "pretrain", "finetune", "eval")
UPPER = ("dpbench.run", "dpbench.sweep", "dpbench.tune", "dpbench.report", "dpbench.cli")


def _imported(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


def test_lower_floors_never_import_the_commands_that_drive_runs():
    offenders = [f"{path.relative_to(REPO)} imports {module}"
                 for floor in LOWER for path in (PACKAGE / floor).rglob("*.py")
                 for module, _ in _imported(path) if module.startswith(UPPER)]
    assert offenders == []


def test_no_module_imports_another_modules_private_names():
    offenders = [f"{path.relative_to(REPO)}: {name} from {module}" for path in PACKAGE.rglob("*.py")
                 for module, names in _imported(path) if module.startswith("dpbench")
                 for name in names if name.startswith("_") and not name.startswith("__")]
    assert offenders == []
