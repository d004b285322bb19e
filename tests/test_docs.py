"""The documentation keeps up with the code (after datasette's documentation tests): every hook, every method
setting and every record key is documented, the README stays one screen or two with a result early, its commands
are the ones CI and a newcomer run, every link in the docs resolves, and no tracked file points outside the
repository."""
import dataclasses
import inspect
import json
import re
import shlex
import subprocess

from dpbench.api import hookspecs
from dpbench.api.registry import load_registry
from tests.conftest import REPO

DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RECORD_SCHEMA = REPO / "dpbench" / "run" / "record_schema.json"
# Built by concatenation so this file does not contain the strings it looks for.
FORBIDDEN = ["../" + "shared", "ARCHITECTURE" + ".md"]
README_MAX_LINES = 150
RESULT_WITHIN_LINES = 40  # a newcomer sees a result's shape (accuracy, FID, ε, record and grid) this early
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _docs_text() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in DOC_FILES)


def _hook_signatures() -> list[str]:
    hooks = [fn for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("dpbench_")]
    return [f"{fn.__name__}({', '.join(inspect.signature(fn).parameters)})" for fn in hooks]


def _method_settings() -> list[tuple[str, str]]:
    registry = load_registry()
    return sorted({(method.name, field.name) for method in registry.methods.values()
                   for field in dataclasses.fields(method.Settings)})


def _tracked_text_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return sorted(name for name in out.decode().split("\0") if name)


def _record_keys() -> list[str]:
    return sorted(json.loads(RECORD_SCHEMA.read_text())["properties"])


def test_docs_exist():
    for path in ("README.md", "LICENSE", "docs/architecture.md", "docs/plugins.md", "docs/record.md", "docs/data.md"):
        assert (REPO / path).is_file(), f"{path} is missing"


def test_there_are_six_hooks():
    assert len(_hook_signatures()) == 6


def test_every_hook_is_documented_with_its_signature():
    docs = _docs_text()
    missing = [signature for signature in _hook_signatures() if signature not in docs]
    assert not missing, f"hook signatures not in README.md or docs/*.md: {missing}"


def test_every_method_setting_is_documented():
    docs = _docs_text()
    settings = _method_settings()
    assert settings, "no method settings found: the registry loaded no methods"
    missing = [f"`{key}` of method {method}" for method, key in settings if f"`{key}`" not in docs]
    assert not missing, f"method settings not in README.md or docs/*.md: {missing}"


def test_no_tracked_file_points_outside_the_repo():
    paths = _tracked_text_files()
    assert paths, "git ls-files listed nothing"
    offenders = []
    for path in paths:
        file = REPO / path
        if not file.is_file():  # deleted in the working tree but still in the index
            continue
        data = file.read_bytes()
        if b"\0" in data[:8192]:  # binary
            continue
        text = data.decode("utf-8", errors="replace")
        offenders += [f"{path} contains {needle!r}" for needle in FORBIDDEN if needle in text]
    assert not offenders, "tracked files point outside the repository:\n" + "\n".join(offenders)


def test_every_record_key_is_documented():
    record_doc = (REPO / "docs" / "record.md").read_text(encoding="utf-8")
    keys = _record_keys()
    assert keys, f"{RECORD_SCHEMA} lists no properties"
    missing = [key for key in keys if f"`{key}`" not in record_doc]
    assert not missing, f"record keys not in docs/record.md: {missing}"


def _readme_lines() -> list[str]:
    return (REPO / "README.md").read_text(encoding="utf-8").splitlines()


def _readme_commands() -> list[str]:
    """The command lines of the README's fenced bash blocks (comments left out)."""
    blocks = re.findall(r"```bash\n(.*?)```", "\n".join(_readme_lines()), re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_fits_on_a_screen_or_two_and_shows_a_result_early():
    lines = _readme_lines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"
    head = "\n".join(lines[:RESULT_WITHIN_LINES])
    for shape in ("accuracy ↑", "fid ↓", "epsilon (recomputed)", "record: runs/", "samples.png"):
        assert shape in head, f"{shape!r} is not in the README's first {RESULT_WITHIN_LINES} lines"
    assert "(leaderboard/LEADERBOARD.md)" in "\n".join(lines), "the README does not link the leaderboard"


def test_readme_figures_are_those_of_the_committed_record_it_names():
    text = "\n".join(_readme_lines())
    (folder,) = set(re.findall(r"leaderboard/records/[\w./-]+?/eps10/seed0", text))
    record = json.loads((REPO / folder / "record.json").read_text())
    shown = {"fid ↓": record["metrics"]["fid"]["value"], "accuracy ↑": record["metrics"]["accuracy"]["value"],
             "epsilon (recomputed)": record["privacy"]["epsilon"]}
    for row, value in shown.items():
        assert re.search(rf"│ {re.escape(row)} +│ +{format(value, '.4g')} │", text), f"{row} is not {value:.4g}"
    assert (REPO / folder / "samples.png").is_file()


def test_readme_commands_are_the_fresh_machine_ones_and_parse():
    from dpbench.cli import main

    setup = "python3 -m venv .venv && .venv/bin/pip install -q --no-cache-dir -c constraints.txt -e "
    run, tests = _readme_commands()
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert tests == ci, "the README's test command is not the one .ci/run runs"
    assert tests.startswith(setup + "'.[test]' && ")
    assert run.startswith(setup + ". && .venv/bin/dpbench run ")
    args = shlex.split(run.split(".venv/bin/dpbench ", 1)[1])
    with main.commands[args[0]].make_context(args[0], args[1:]) as ctx:  # the options exist and take these values
        params = ctx.params
    registry = load_registry()
    assert params["method"] in registry.methods and registry.pair(params["pair"]).name == params["pair"]


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation other than - and _ dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", markdown, flags=re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_relative_link_in_the_readme_and_docs_resolves():
    broken = []
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        for target in LINK.findall(re.sub(r"```.*?```", "", text, flags=re.S)):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            resolved = (path.parent / file).resolve() if file else path
            if not resolved.exists():
                broken.append(f"{path.relative_to(REPO)}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved.read_text(encoding="utf-8")):
                broken.append(f"{path.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)
