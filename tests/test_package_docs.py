"""Every package's docstring names each of its modules (and subpackages), so a reader who opens
`__init__.py` finds the whole room: a module added without a word there fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import lmstream

ROOT = Path(lmstream.__file__).parent


def _packages() -> list[Path]:
    return sorted(p.parent for p in ROOT.rglob("__init__.py") if p.parent != ROOT)


def _members(package: Path) -> list[str]:
    out = [p.stem for p in package.glob("*.py") if p.stem != "__init__"]
    out += [p.name for p in package.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    return sorted(out)


def test_every_package_docstring_names_its_modules():
    unnamed: dict[str, list[str]] = {}
    for package in _packages():
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8"))) or ""
        missing = [m for m in _members(package) if not any(f"`{m}{end}" in doc for end in ("`", ".py`", "/`"))]
        if missing:
            unnamed[str(package.relative_to(ROOT))] = missing
    assert not unnamed, f"name these modules in their package's docstring (as `module`): {unnamed}"
