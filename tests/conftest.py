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


def pytest_configure(config):
    config.addinivalue_line("markers", "hostile: hostile-input tests (tests/test_hostile_input.py)")
    config.addinivalue_line("markers", "hostile_case(text): what a hostile-input test feeds in, in plain words")


_HOSTILE_OUTCOMES: dict[str, list[str]] = {}


def pytest_runtest_logreport(report):
    if report.when != "call" and not (report.when == "setup" and report.failed):
        return
    text = report.user_properties and dict(report.user_properties).get("hostile_case")
    if text:
        _HOSTILE_OUTCOMES.setdefault(text, []).append(report.outcome)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    marker = item.get_closest_marker("hostile_case")
    if marker:
        item.user_properties.append(("hostile_case", marker.args[0]))


def pytest_terminal_summary(terminalreporter):
    if not _HOSTILE_OUTCOMES:
        return
    terminalreporter.section("hostile input: what was fed in, and whether dpbench refused it cleanly")
    for text, outcomes in _HOSTILE_OUTCOMES.items():
        verdict = "PASS" if all(o == "passed" for o in outcomes) else "FAIL"
        terminalreporter.write_line(f"{verdict}  {text} ({len(outcomes)} case(s))")
