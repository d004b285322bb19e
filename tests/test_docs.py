"""The documentation keeps up with the code (after datasette's documentation tests): every hook, every method
setting and every record key is documented, and no tracked file points outside the repository."""
import dataclasses
import inspect
import json
import subprocess

from dpbench.api import hookspecs
from dpbench.api.registry import load_registry
from tests.conftest import REPO

DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RECORD_SCHEMA = REPO / "dpbench" / "run" / "record_schema.json"
# Built by concatenation so this file does not contain the strings it looks for.
FORBIDDEN = ["../" + "shared", "ARCHITECTURE" + ".md"]


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
