"""docs/faults.md keeps up with the fault and hostile-input tests: every test, and every named case, has its row."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
DOC = TESTS.parent / "docs" / "faults.md"
MODULES = sorted(p.stem for p in [*TESTS.glob("test_faults_*.py"), *TESTS.glob("test_hostile_*.py")]
                 if p.stem != "test_faults_table")


def cases_of(module_name: str) -> dict[str, list[str]]:
    """Test functions of a module, each with its explicit case ids (``ids=`` of its parametrize marks)."""
    module = importlib.import_module(module_name)
    found: dict[str, list[str]] = {}
    for name, fn in inspect.getmembers(module, inspect.isfunction):
        if not name.startswith("test_") or fn.__module__ != module_name:
            continue
        ids: list[str] = []
        for mark in getattr(fn, "pytestmark", []):
            if mark.name == "parametrize" and mark.kwargs.get("ids") is not None:
                ids += [str(i) for i in mark.kwargs["ids"]]
        found[name] = ids
    return found


@pytest.mark.parametrize("module_name", MODULES)
def test_every_test_and_case_has_its_row(module_name):
    doc = DOC.read_text(encoding="utf-8")
    rows = {m.group(1): line for line in doc.splitlines() for m in re.finditer(r"`(test_\w+)`", line)}
    for name, ids in cases_of(module_name).items():
        assert name in rows, f"docs/faults.md has no row for {module_name}.{name}"
        row = rows[name].lower() + " " + _paragraph(doc, name).lower()
        missing = [i for i in ids if i.lower() not in row]
        assert not missing, f"docs/faults.md: the row of {name} does not name the cases {missing}"


def test_every_row_names_a_test_that_exists():
    names = {n for m in MODULES for n in cases_of(m)}
    for named in re.findall(r"`(test_\w+)`", DOC.read_text(encoding="utf-8")):
        if named != "test_faults_table":
            assert named in names, f"docs/faults.md names {named}, which no fault or hostile test defines"


def _paragraph(doc: str, name: str) -> str:
    """The prose paragraph that names a test (for tests described in a paragraph instead of a table row)."""
    for block in doc.split("\n\n"):
        if f"`{name}`" in block:
            return block.replace("\n", " ")
    return ""
