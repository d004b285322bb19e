import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One cache (pre-training, Inception weights, FID statistics) for the whole session, as a user has."""
    return tmp_path_factory.mktemp("dpbench-cache")


def install_fake_distribution(root: Path, dist: str, version: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """Lay out a minimal installed distribution (dist-info + modules) that importlib.metadata discovers on sys.path."""
    # Installers name the folder with the normalised name ('-' -> '_'); importlib.metadata takes the text before
    # the first '-' as the name, so "dpbench-x-1.0.dist-info" would shadow dpbench itself.
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = ["[dpbench]"] + [f"{name} = {target}" for name, target in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    """A sys.path folder for throwaway plugin distributions; cleaned up after the test."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [m for m in sys.modules if m.startswith("thirdparty_")]:
        del sys.modules[name]
