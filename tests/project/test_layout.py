"""The engine's folders keep their roles: what each may import, pinned so the layout cannot drift.

`source/` (reading the engine) and `target/` (writing pages) never import each other, nor the run
or check layers built on them; nothing in the engine imports Flask or APScheduler; no folder of the
package holds more than 15 modules side by side.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "rtarf_sync" / "engine"
FORBIDDEN = {
    "source": ("rtarf_sync.engine.target", "rtarf_sync.engine.runs", "rtarf_sync.engine.checks"),
    "target": ("rtarf_sync.engine.source", "rtarf_sync.engine.runs", "rtarf_sync.engine.checks"),
}


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of the file (lazy imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def offending(folder: Path, prefixes: tuple[str, ...]) -> list[str]:
    """`file: module` for each import under `folder` that starts with one of `prefixes`."""
    return sorted(
        f"{path.name}: {name}"
        for path in folder.rglob("*.py")
        for name in imported_modules(path)
        if name.startswith(prefixes)
    )


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_source_and_target_import_neither_each_other_nor_the_layers_above(folder: str) -> None:
    assert not offending(ENGINE / folder, FORBIDDEN[folder])


def test_the_engine_imports_neither_flask_nor_apscheduler() -> None:
    assert not offending(ENGINE, ("flask", "apscheduler", "werkzeug", "rtarf_sync.api", "rtarf_sync.service"))


def test_no_folder_of_the_package_holds_more_than_15_modules() -> None:
    crowded = {
        str(folder.relative_to(ROOT)): count
        for folder in [ROOT / "rtarf_sync", *(path for path in (ROOT / "rtarf_sync").rglob("*") if path.is_dir())]
        if (count := len(list(folder.glob("*.py")))) > 15
    }
    assert not crowded


def test_the_checker_sees_a_lazy_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "reader.py"
    module.write_text("def f():\n    from rtarf_sync.engine.target.sink import PostgresSink\n")
    found = {line.split(": ", 1)[1] for line in offending(tmp_path, FORBIDDEN["source"])}
    assert found == {"rtarf_sync.engine.target.sink", "rtarf_sync.engine.target.sink.PostgresSink"}
