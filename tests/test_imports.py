"""The floors of ``frame`` import downwards only: no import circle, and nothing below the
commands (``frame.cli``) or the run floor (``frame.run``) imports them.

The graph is read from the source with ``ast``: every import counts, at the top of a module,
inside a function or under ``TYPE_CHECKING``. Importing ``a.b.c`` also runs the packages
``a`` and ``a.b`` (their ``__init__``), so those are edges too, unless they enclose the
importing module (a package's ``__init__`` importing its own modules is no circle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: a floor and the modules allowed to import it (besides its own): the commands and the Python API
#: (frame.api, the commands' twin for a notebook) stand on the run floor
FLOORS = {"frame.cli": ("frame.cli",), "frame.run": ("frame.run", "frame.cli", "frame.api")}


def module_names() -> dict[str, Path]:
    names = {}
    for path in sorted((ROOT / "frame").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``frame`` that importing `name` imports directly."""
    package = name if is_package(name, modules) else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    edges = set()
    for target in targets:
        if target not in modules:
            continue
        parts = target.split(".")
        for depth in range(1, len(parts) + 1):  # the enclosing packages run first
            outer = ".".join(parts[:depth])
            if outer in modules and not (name == outer or name.startswith(outer + ".")):
                edges.add(outer)
    return edges


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imported(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` as a path that ends where it starts, else None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle_in_frame():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


@pytest.mark.parametrize("floor", sorted(FLOORS))
def test_no_lower_floor_imports_the_floors_above_it(floor):
    allowed = FLOORS[floor]
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in import_graph().items() if not name.startswith(allowed)
        for target in targets if target == floor or target.startswith(floor + ".")
    )
    assert not wrong, "; ".join(wrong)


def test_the_walk_sees_imports_inside_functions_and_circles(tmp_path):
    """The checks above would fail on the circles they guard against."""
    graph = {"frame.a": {"frame.b"}, "frame.b": {"frame.c"}, "frame.c": {"frame.a"}, "frame.d": {"frame.a"}}
    assert find_cycle(graph) == ["frame.a", "frame.b", "frame.c", "frame.a"]
    assert find_cycle({"frame.a": {"frame.b"}, "frame.b": set()}) is None
    modules = module_names()
    source = tmp_path / "probe.py"
    source.write_text("def late():\n    from frame.cli.train import main\n    from ..models import base\n")
    modules["frame.nets.probe"] = source
    assert imported("frame.nets.probe", source, modules) == {"frame.cli", "frame.cli.train", "frame.models", "frame.models.base"}
