"""The cache follows the user, not the working folder: runs started from two folders resolve one cache, so the
Inception weights are derived once; $DPBENCH_CACHE and --cache-dir override it, and the data root sits beside it."""
from pathlib import Path

import pytest

from dpbench.cli import main
from dpbench.run.request import RunRequest
from dpbench.storage import default_cache_dir, default_data_root

RUN_ARGS = ["--method", "dp-loda", "--pair", "digits-mnist", "--eps", "10"]


@pytest.fixture
def user_home(tmp_path, monkeypatch):
    """A user whose cache folder is tmp/xdg-cache ($XDG_CACHE_HOME, which platformdirs honours on Linux)."""
    for name in ("DPBENCH_CACHE", "DPBENCH_DATA_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return tmp_path


def cli_cache_dir(*args: str) -> Path:
    """The --cache-dir `dpbench run ARGS` would use, parsed as the command line parses it (nothing runs)."""
    command = main.commands["run"]
    with command.make_context("run", [*RUN_ARGS, *args]) as ctx:
        return Path(ctx.params["cache_dir"])


def test_two_working_folders_resolve_one_absolute_cache_in_the_user_cache_folder(user_home, monkeypatch):
    resolved = []
    for folder in ("project-a", "elsewhere/project-b"):
        (user_home / folder).mkdir(parents=True)
        monkeypatch.chdir(user_home / folder)
        resolved.append(cli_cache_dir())
    assert resolved[0] == resolved[1] == user_home / "xdg-cache" / "dpbench"
    assert resolved[0].is_absolute()
    assert RunRequest(method="m", pair="p", epsilon=1.0).cache_dir == resolved[0]  # the Python API agrees


def test_the_inception_weights_are_derived_once_for_runs_from_two_folders(user_home, monkeypatch):
    import torch

    import dpbench.eval.inception as inception

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(user_home / "no-hub"))  # no torch-fidelity download
    derived = []

    def fake_derive(path: Path) -> Path:  # stands in for the minutes-long derivation
        derived.append(path)
        path.write_bytes(b"weights")
        return path

    monkeypatch.setattr(inception, "derive_inception_weights", fake_derive)
    paths = []
    for folder in ("a", "b"):
        (user_home / folder).mkdir()
        monkeypatch.chdir(user_home / folder)
        paths.append(inception.resolve_inception_weights(cli_cache_dir() / "fidelity"))  # as the FID evaluator asks
    assert paths[0] == paths[1] and len(derived) == 1


def test_environment_and_option_override_the_default_in_that_order(user_home, monkeypatch):
    monkeypatch.setenv("DPBENCH_CACHE", str(user_home / "from-env"))
    assert cli_cache_dir() == user_home / "from-env"
    assert default_cache_dir() == user_home / "from-env"
    assert cli_cache_dir("--cache-dir", str(user_home / "from-option")) == user_home / "from-option"


def test_the_data_root_sits_in_the_user_cache_folder_unless_set(user_home, monkeypatch):
    from dpbench.data.file_report import resolve_data_root

    assert default_data_root() == resolve_data_root(None) == user_home / "xdg-cache" / "dpbench" / "data"
    monkeypatch.setenv("DPBENCH_CACHE", str(user_home / "other-cache"))  # the datasets are the user's, not the cache's
    assert resolve_data_root(None) == user_home / "xdg-cache" / "dpbench" / "data"
    monkeypatch.setenv("DPBENCH_DATA_ROOT", str(user_home / "datasets"))
    assert resolve_data_root(None) == user_home / "datasets"
    assert resolve_data_root(str(user_home / "given")) == user_home / "given"
