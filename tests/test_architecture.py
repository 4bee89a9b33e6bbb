"""The architecture, read from the source tree: which module may issue which SQL.

One module, app/eventlog/store.py, issues every statement on `events` (its indexes, locks and snapshot
rules in one place); HTTP endpoints issue none at all, they call the module that owns each table.
Pure: the sources are parsed with ast, nothing is imported, no database is needed.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
GATEWAY = SRC / "app" / "eventlog" / "store.py"
ENDPOINTS = SRC / "app" / "endpoints"

# A clause naming the events table (not events_to_outbox, not a column such as events.position).
ON_EVENTS = re.compile(
    r"\b(?:from|join|into|update|truncate|copy|table|only)\s+(?:only\s+)?(?:\"?public\"?\s*\.\s*)?\"?events\"?(?![\w.])",
    re.IGNORECASE,
)
STATEMENT = re.compile(r"\b(?:SELECT\b|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|TRUNCATE|COPY\s+\w+)")
DATABASE_PACKAGES = ("sqlalchemy", "psycopg", "psycopg2", "asyncpg")
EXECUTING_CALLS = {"execute", "executemany", "exec_driver_sql", "text", "driver", "cursor", "scalar", "scalars"}


def _strings(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Every string literal but docstrings; an f-string with `{}` where its values go."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            yield node.lineno, "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def _called(node: ast.Call) -> str:
    return node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")


def sql_on_events(source: str) -> list[str]:
    """Where this source names the events table in SQL text or as a SQLAlchemy table."""
    tree = ast.parse(source)
    found = [f"line {line}: {text.strip()[:80]!r}" for line, text in _strings(tree) if ON_EVENTS.search(text)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _called(node) in ("Table", "table") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and first.value == "events":
                found.append(f"line {node.lineno}: a SQLAlchemy table on events")
    return found


def database_access(source: str) -> list[str]:
    """Where this source talks to a database itself: a driver or SQLAlchemy import, a call that
    executes or builds a statement, or SQL text."""
    tree = ast.parse(source)
    found = [f"line {line}: SQL {text.strip()[:80]!r}" for line, text in _strings(tree) if STATEMENT.search(text)]
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        found += [f"line {node.lineno}: imports {n}" for n in names if n.split(".")[0] in DATABASE_PACKAGES]
        if isinstance(node, ast.Call) and _called(node) in EXECUTING_CALLS:
            found.append(f"line {node.lineno}: calls {_called(node)}()")
    return found


def _modules(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def test_only_the_event_store_issues_sql_on_events() -> None:
    offenders = {
        str(path.relative_to(SRC)): found
        for path in _modules(SRC)
        if path != GATEWAY and (found := sql_on_events(path.read_text()))
    }
    assert offenders == {}, "SQL on `events` belongs in app/eventlog/store.py"
    assert len(sql_on_events(GATEWAY.read_text())) >= 5  # the check sees the gateway's own statements


def test_no_endpoint_issues_sql() -> None:
    offenders = {
        str(path.relative_to(SRC)): found
        for path in _modules(ENDPOINTS)
        if (found := database_access(path.read_text()))
    }
    assert offenders == {}, "endpoints call the module that owns a table; they hold no SQL"
    assert len(_modules(ENDPOINTS)) >= 8


@pytest.mark.parametrize(
    "source",
    [
        'q = "SELECT count(*) FROM events"',
        'q = f"SELECT {COLUMNS} FROM events {where}"',
        'q = " FROM outbox o JOIN events e ON e.position = o.position"',
        'q = "INSERT INTO public.events (event_id) VALUES (%s)"',
        "q = 'UPDATE \"events\" SET payload = 1'",
        'events = Table("events", metadata)',
    ],
)
def test_the_events_check_catches_sql_on_events(source: str) -> None:
    assert sql_on_events(source)


@pytest.mark.parametrize(
    "source",
    [
        '"""Reads from events written earlier."""',
        'log.info("rebuilt from %d events", n)',
        'msg = f"rebuilt from {done} events"',
        'q = "INSERT INTO events_archive SELECT 1"',
        'q = "SELECT events.position FROM outbox"',
    ],
)
def test_the_events_check_leaves_prose_and_other_tables_alone(source: str) -> None:
    assert not sql_on_events(source)


@pytest.mark.parametrize(
    "source",
    [
        "from sqlalchemy import text",
        "import psycopg",
        "conn.execute(query)",
        "pg.exec_driver_sql(query)",
        'rows = run("SELECT id FROM dead_letters WHERE id = :id")',
        'run(f"DELETE FROM {table} WHERE id = 1")',
        'run("UPDATE projection_rebuilds SET job_id = :j")',
    ],
)
def test_the_endpoint_check_catches_database_access(source: str) -> None:
    assert database_access(source)


def test_the_endpoint_check_leaves_views_alone() -> None:
    view = '''
"""Dead letters: select one, update or delete it through the owner."""
from workers import deadletters
def get(letter_id: int) -> dict:
    """Show one dead letter (UPDATE nothing)"""
    return deadletters.find(engine(), letter_id) or abort(404, message="no dead letter selected")
'''
    assert database_access(view) == []


PROCESS_MANAGER = SRC / "workers" / "fulfilment"


def appends_directly(source: str) -> list[str]:
    """Where this source appends to the log itself (app.eventlog.store's append*, however imported),
    rather than through a command handler."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "app.eventlog.store":
            found += [f"line {node.lineno}: imports {a.name}" for a in node.names if a.name.startswith("append")]
        if (isinstance(node, ast.Attribute) and node.attr.startswith("append") and isinstance(node.value, ast.Name)
                and node.value.id in ("eventstore", "store")):  # fmt: skip
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_the_process_manager_issues_commands_through_the_handlers_the_api_uses() -> None:
    modules = _modules(PROCESS_MANAGER)
    assert {path.name for path in modules} >= {"process.py", "deadlines.py", "state.py"}
    offenders = {str(p.relative_to(SRC)): found for p in modules if (found := appends_directly(p.read_text()))}
    assert offenders == {}, "the process manager appends only through commands/handlers.py and commands/stock.py"
    sources = "".join(path.read_text() for path in modules)
    assert "from commands.handlers import" in sources and "from commands import stock" in sources


@pytest.mark.parametrize(
    "source",
    [
        "from app.eventlog.store import append",
        "eventstore.append(conn, s, 0, [], {})",
        "store.append_streams(c, [], {})",
    ],
)
def test_the_append_check_catches_a_direct_append(source: str) -> None:
    assert appends_directly(source)
