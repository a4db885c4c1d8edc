"""The package's import structure: no cycles among model_go modules, counting imports made only
for type checking too (they are no runtime cycle, but a cycle in the design all the same), and
wire/ is the leaf, importing nothing of ours but errors."""

from __future__ import annotations

import ast
from pathlib import Path

import model_go

ROOT = Path(model_go.__file__).parent


def _module_name(path: Path) -> str:
    parts = ["model_go", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py") if "migrations" not in p.parts}


def _resolve(name: str) -> str | None:
    """The model_go module an import names (a `from package import module` names the module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):  # every level: module, function (deferred) and TYPE_CHECKING imports
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                ).strip(".")
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        for name in names:
            target = _resolve(name) if name.startswith("model_go") else None
            if target is not None and target != module and not module.startswith(target + "."):
                found.add(target)
    return found


GRAPH = {m: _imports(m) for m in MODULES}


def _cycle_from(start: str) -> list[str] | None:
    stack = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in GRAPH[node]:
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def test_no_import_cycles() -> None:
    cycles = {tuple(c) for m in MODULES if (c := _cycle_from(m)) is not None}
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in sorted(cycles))


def test_wire_is_the_leaf() -> None:
    allowed = {"model_go.errors"}
    for module, imported in GRAPH.items():
        if module.startswith("model_go.wire"):
            outside = {i for i in imported if not i.startswith("model_go.wire")} - allowed
            assert not outside, f"{module} imports {sorted(outside)}"
