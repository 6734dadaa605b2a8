"""The shape the code keeps: packages meet through their public faces, functions stay short."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "optileuk"


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"))


def _target(path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = list(path.relative_to(ROOT.parent).with_suffix("").parts[:-1])
    base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join(base + ([node.module] if node.module else []))


def test_no_module_imports_a_private_module_of_another_package():
    found = []
    for path, tree in _modules():
        parts = path.relative_to(ROOT).parts
        own = parts[0] if len(parts) > 1 else None
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            mod = _target(path, node).split(".")
            if mod[0] != "optileuk":
                continue
            names = [a.name for a in node.names]
            private = any(p.startswith("_") for p in mod[1:]) or any(
                n.startswith("_") and not n.startswith("__") for n in names)
            if private and (mod[1] if len(mod) > 1 else None) != own:
                found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}: {'.'.join(mod)} {names}")
    assert not found, "\n".join(found)


def test_no_function_is_over_60_lines():
    long = [f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path, tree in _modules() for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60]
    assert not long, "\n".join(long)
