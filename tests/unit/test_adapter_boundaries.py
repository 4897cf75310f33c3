"""An adapter uses another module's objects through their public methods only (STYLE.md habit
16: twins that can evolve apart). A private name (`_x`) belongs to the module that defines it:
`other._x` is refused unless `_x` is defined in the same module (a class and its timer, say).
Every module under chalicelib/adapters/ is parsed with `ast`; a failure names file and line."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ADAPTERS = Path(__file__).resolve().parents[2] / "chalicelib" / "adapters"


def _own_private_names(tree: ast.AST) -> set[str]:
    """The private names a module defines: its functions, methods and classes, and the
    attributes its code assigns (`self._x = ...`)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Attribute):
            names.add(node.target.attr)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def _reaches_into(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    own = _own_private_names(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        if node.attr not in own:
            found.append(f"{path.name}:{node.lineno} reads {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("path", sorted(ADAPTERS.glob("*.py")), ids=lambda p: p.name)
def test_an_adapter_reads_no_private_name_of_another_module(path):
    assert _reaches_into(path) == []


def test_the_check_finds_a_reach_into_another_object(tmp_path):
    module = tmp_path / "twin.py"
    module.write_text("class Twin:\n    def __init__(self, store):\n        self._store = store\n\n"
                      "    def ids(self):\n        return list(self._store._jobs)\n")
    assert _reaches_into(module) == ["twin.py:6 reads self._store._jobs"]
