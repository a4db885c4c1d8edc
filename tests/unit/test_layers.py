"""SQL lives in storage/ (queries) and services/ (rules); everything else calls a service."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "model_go"
SQL_LAYERS = ("storage", "services")
SQL_BUILDERS = frozenset({"select", "insert", "update", "delete"})
SQLALCHEMY_MODULES = frozenset({"sqlalchemy", "sqlalchemy.sql", "sqlalchemy.sql.expression"})


def sql_uses(source: str) -> list[str]:
    """Each place a module imports a SQL statement builder or calls one through the sqlalchemy module."""
    tree = ast.parse(source)
    aliases = {"sqlalchemy"}  # names the sqlalchemy module (or its sql subpackage) is bound to
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in SQLALCHEMY_MODULES:
                    aliases.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module in SQLALCHEMY_MODULES:
            found += [f"line {node.lineno}: imports {a.name}" for a in node.names if a.name in SQL_BUILDERS]
            aliases |= {a.asname or a.name for a in node.names if a.name in ("sql", "expression")}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in SQL_BUILDERS
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_the_checker_sees_every_spelling() -> None:
    assert sql_uses("from sqlalchemy import select, func\n") == ["line 1: imports select"]
    assert sql_uses("from sqlalchemy.sql import delete as d\n") == ["line 1: imports delete"]
    assert sql_uses("import sqlalchemy as sa\nsa.update(t)\n") == ["line 2: sa.update"]
    assert sql_uses("from sqlalchemy import sql\nsql.insert(t)\n") == ["line 2: sql.insert"]
    assert sql_uses("from sqlalchemy import Row, func\nfrom sqlalchemy.exc import IntegrityError\n") == []


def test_sql_only_in_storage_and_services() -> None:
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.split("/")[0] in SQL_LAYERS:
            continue
        uses = sql_uses(path.read_text())
        if uses:
            offenders[relative] = uses
    assert offenders == {}, "build SQL in storage/ (a repository) or services/, not here"


def storage_imports(source: str) -> list[str]:
    """Each import of model_go.storage (or a module in it) in a module's source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("model_go.storage"):
            found.append(f"line {node.lineno}: from {node.module}")
        elif isinstance(node, ast.Import):
            found += [
                f"line {node.lineno}: import {a.name}"
                for a in node.names
                if a.name.startswith("model_go.storage")
            ]
    return found


def test_routes_and_commands_go_through_services() -> None:
    """api/ and cli/ parse, call a service and render: they never reach the storage layer themselves."""
    assert storage_imports("from model_go.storage import repo\nimport model_go.storage.db\n") == [
        "line 1: from model_go.storage",
        "line 2: import model_go.storage.db",
    ]
    offenders = {}
    for layer in ("api", "cli"):
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            uses = storage_imports(path.read_text())
            if uses:
                offenders[path.relative_to(PACKAGE).as_posix()] = uses
    assert offenders == {}, "call a service (src/model_go/services/) instead"
