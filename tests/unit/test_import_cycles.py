"""The package imports as a tree: no module imports, at load time, one that imports it back
(directly, through others, or through a package's __init__). Imports inside functions and under
TYPE_CHECKING don't count: they run later, or never."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import dockyard

ROOT = Path(dockyard.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def load_time_imports(path: Path, name: str) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for statement in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            if isinstance(statement, ast.Import):
                found.update(alias.name for alias in statement.names)
            elif isinstance(statement, ast.ImportFrom):
                base = statement.module or ""
                if statement.level:
                    anchor = package.split(".")[: len(package.split(".")) - statement.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in statement.names)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in ROOT.rglob("*.py") if "migrations" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        edges = set()
        for target in load_time_imports(path, name):
            parts = target.split(".")
            # Importing a.b.c loads the packages a.b and a too.
            for end in range(2, len(parts) + 1):
                module = ".".join(parts[:end])
                if module in paths and module != name:
                    edges.add(module)
        graph[name] = edges
    return graph


def test_no_module_imports_itself_back() -> None:
    graph = import_graph()
    assert "dockyard.core.registry.uploads" in graph
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None
