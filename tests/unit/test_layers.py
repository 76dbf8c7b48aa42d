"""The layer rule, checked: envs/trainer/overlays/stream never import an upper layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "trainer", "stream", "overlays", "envs")
# What each lower layer may import from the project (STYLE.md's table).
ALLOWED = {"envs": set(), "trainer": {"envs"}, "overlays": set(), "stream": set()}


def project_imports(path: Path) -> list[tuple[int, str]]:
    """Return (line, top-level package) for every import of a project package in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, n.split(".")[0]) for n in names if n.split(".")[0] in PACKAGES]
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_lower_layer_imports_only_what_the_table_allows(package: str) -> None:
    bad = []
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no sources found in {package}/"
    for path in files:
        for line, imported in project_imports(path):
            if imported != package and imported not in ALLOWED[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    assert not bad, "layer rule broken:\n" + "\n".join(bad)


def test_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    source = tmp_path / "x.py"
    source.write_text("import os\nfrom app.config import Config\nimport stream.encoder as e\n")
    assert project_imports(source) == [(2, "app"), (3, "stream")]
