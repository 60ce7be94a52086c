"""The house: one import package, parts that stay in their rooms, and a wheel that carries its data."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIR: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]
PARTS = {"robot": "callbot.robot", "audio_server": "callbot.audio_server", "simswitch": "callbot.simswitch"}


def _modules(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level}
    return names


def test_every_package_folder_is_listed_in_pyproject() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = set()
    for name, folder in PACKAGE_DIR.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *rel)))
    assert found == listed, f"missing from pyproject: {sorted(found - listed)}; listed but absent: {sorted(listed - found)}"


@pytest.mark.parametrize("part", sorted(PARTS))
def test_a_part_never_imports_another_part_or_the_top_floor(part: str) -> None:
    others = [PARTS[o] for o in PARTS if o != part] + ["callbot.app"]
    bad = [(p.relative_to(ROOT).as_posix(), name) for p in _modules(part) for name in _imports(p)
           if any(name == o or name.startswith(o + ".") for o in others)]
    assert not bad, f"{part} reaches into another room: {bad}"


def test_the_core_imports_no_part() -> None:
    parts = [*PARTS.values(), "callbot.app"]
    bad = [(p.name, name) for p in _modules("callbot") if p.name != "__main__.py" for name in _imports(p)
           if any(name == o or name.startswith(o + ".") for o in parts)]
    assert not bad, f"the shared core imports a part: {bad}"


def test_no_product_module_reads_the_tests_folder() -> None:
    bad = [p.relative_to(ROOT).as_posix() for folder in (*PACKAGE_DIR.values(),) for p in _modules(folder)
           if '"tests"' in p.read_text() or "tests/fixtures" in p.read_text()]
    assert not bad, bad


def test_the_wheel_declares_its_data() -> None:
    data = PYPROJECT["tool"]["setuptools"]["package-data"]
    assert "demo_calls/*.wav" in data["callbot"] and "bundled/*.toml" in data["callbot.robot.scenario"]
    from callbot.resources import demo_calls_dir, prompts_dir

    assert (demo_calls_dir() / "long_reply.wav").is_file() and (demo_calls_dir() / "long_reply.json").is_file()
    assert (prompts_dir() / "en" / "8000" / "greeting.wav").is_file()
