import contextlib
import os
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


MOCK_METHOD = "mock-generator"
MOCK_METHOD_B = "mock-generator-b"

MOCK_METHOD_PLUGIN = '''
"""thirdparty-mock-method: the test suite's stand-in generator. It takes real private DP-SGD steps through
ctx.private_trainer(...) on a model of one number per class, then draws seeded random uint8 images, so a run of it
goes through every stage of the harness (ledger, re-check, sampling, scoring, record) in seconds."""
from dataclasses import dataclass

import torch

import dpbench


@dataclass(frozen=True)
class MockSettings:
    steps: int = dpbench.setting(1, "DP-SGD steps", minimum=1)
    batch_size: int = dpbench.setting(16, "expected batch size of Poisson sampling", minimum=1)
    samples_per_class: int = dpbench.setting(2, "random images drawn per class", minimum=1)


class ClassLevels(torch.nn.Module):
    """One learnable grey level per class: the tiniest model a per-example loss can train."""

    def __init__(self, num_classes):
        super().__init__()
        self.levels = torch.nn.Parameter(torch.zeros(num_classes))

    def forward(self, labels):
        return self.levels[labels]


def per_example_loss(model_fn, example):
    return 0.5 * (model_fn(example["y"].unsqueeze(0))[0] - example["x"].mean()) ** 2


class RandomImages:
    """The artifact: seeded random uint8 images of the pair's shape, whatever the labels."""

    def __init__(self, image_shape):
        self.image_shape = tuple(image_shape)

    def sample(self, labels, seed, progress=None):
        generator = torch.Generator().manual_seed(seed)
        return torch.randint(0, 256, (len(labels), *self.image_shape), generator=generator, dtype=torch.uint8)


class MockGenerator(dpbench.Method):
    description = "the test suite's stand-in: real DP steps on one number per class, random images out"
    produces = "generator"
    reference = "tests/conftest.py"
    Settings = MockSettings

    def __init__(self, name):
        self.name = name

    def settings(self, preset, pair):
        return MockSettings()

    def train(self, ctx, settings):
        model = ClassLevels(ctx.private.num_classes).to(ctx.device)
        dp = dpbench.DPSettings(expected_batch_size=settings.batch_size, steps=settings.steps, max_grad_norm=1.0)
        trainer = ctx.private_trainer(model, per_example_loss, lambda examples, generator: examples, dp,
                                      prepare=lambda images: images.float() / 127.5 - 1)
        with ctx.stage("finetune"):
            trainer.run(torch.optim.SGD(model.parameters(), lr=0.1), ctx.progress)
        size = sum(p.numel() for p in model.parameters())
        return dpbench.MethodResult(artifact=RandomImages(ctx.private.image_shape), trainable_parameters=size,
                                    total_parameters=size)


@dpbench.hookimpl
def dpbench_register_methods(register):
    register(MockGenerator("%s"))
    register(MockGenerator("%s"))
''' % (MOCK_METHOD, MOCK_METHOD_B)


@pytest.fixture(scope="session")
def mock_method_site(tmp_path_factory) -> Path:
    """A sys.path folder holding the mock method's installed distribution (dist-info with its "dpbench" entry
    point, and the module), written once per session."""
    root = tmp_path_factory.mktemp("mock-method-site")
    install_fake_distribution(root, "dpbench-mock-method", "0.1.0", {"mock_method": "thirdparty_mock_method"},
                              {"thirdparty_mock_method": MOCK_METHOD_PLUGIN})
    return root


@contextlib.contextmanager
def mock_method_installed(site: Path):
    """Put the mock method's distribution on sys.path (this process, spawned sweep workers) and on PYTHONPATH
    (subprocesses, submitit jobs) for the duration; undone after."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(site))
        patch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
        try:
            yield MOCK_METHOD
        finally:
            sys.modules.pop("thirdparty_mock_method", None)


@pytest.fixture
def mock_method(mock_method_site) -> str:
    """The mock generator methods 'mock-generator' and 'mock-generator-b', registered by a pluggy plugin of the
    "dpbench" entry-point group as an installed third-party distribution would be: `load_registry()`, the CLI,
    spawned sweep workers and submitit jobs all see them. Returns the first name.

    Use it instead of a built-in method wherever a test is about the harness (sweep, records, leaderboard, resume,
    evaluate) rather than about a method: a run takes seconds instead of a diffusion fine-tune. A module-scoped
    fixture uses `mock_method_installed(mock_method_site)` instead."""
    with mock_method_installed(mock_method_site) as name:
        yield name


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
