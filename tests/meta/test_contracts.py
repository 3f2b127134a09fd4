"""Static contracts: the import-linter layers, and the names `modelbrowse.core` exports."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import modelbrowse.core as core

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def mapped_package(folder: Path) -> Path:
    """A folder holding `modelbrowse/` with the three source folders linked in: the package is
    mapped onto `core/`, `widgets/` and `tui/`, so tools that walk files cannot find it alone."""
    package = folder / "modelbrowse"
    package.mkdir()
    (package / "__init__.py").touch()
    for part in ("core", "widgets", "tui"):
        (package / part).symlink_to(ROOT / part)
    return folder


def test_every_exported_name_resolves() -> None:
    assert sorted(core.__all__) == sorted(core._EXPORTS)
    for name in core.__all__:
        value = getattr(core, name)
        assert getattr(value, "__name__", name) == name, name


def test_type_checkers_see_each_export_where_it_is_loaded_from() -> None:
    """The `TYPE_CHECKING` block names the same module for each name as the lazy import."""
    tree = ast.parse((ROOT / "core" / "__init__.py").read_text())
    (block,) = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name)
        if node.test.id == "TYPE_CHECKING"
    ]
    seen = {
        alias.name: statement.module
        for statement in block.body
        if isinstance(statement, ast.ImportFrom)
        for alias in statement.names
    }
    assert seen == core._EXPORTS


def test_importing_the_core_package_imports_no_torch() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, modelbrowse.core\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'numpy', 'textual', 'rich')))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed")
def test_import_contracts_are_kept(tmp_path: Path) -> None:
    """Layers tui -> widgets -> core, no Textual in core, no torch in widgets or the reading layer
    (the contracts are in pyproject.toml, each ignored import with its reason)."""
    config = ROOT / "pyproject.toml"
    contracts = tomllib.loads(config.read_text())["tool"]["importlinter"]["contracts"]
    result = subprocess.run(
        [str(LINT_IMPORTS), str(config), "--no-cache"],
        cwd=mapped_package(tmp_path),
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(contracts)} kept, 0 broken." in result.stdout
