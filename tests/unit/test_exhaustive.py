"""Adding an event or a command without handling it fails the type check, not a request at run time.

The aggregate folds events and the handlers decide commands by `match` with `assert_never` in the
default branch. This test proves that the check bites: it copies the sources, adds a new member to
the Event union and to the OrderCommand union, and runs mypy (with the project's own settings) on the
copy. mypy must report each new member at its assert_never, and nothing else.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mypy import api as mypy

ROOT = Path(__file__).resolve().parents[2]

NEW_EVENT = '''
@dataclass(frozen=True)
class OrderArchived:
    """An order was archived (added by tests/unit/test_exhaustive.py, handled nowhere)."""

    order_id: str


Event = Union[OrderArchived, '''

NEW_COMMAND = """
@dataclass(frozen=True)
class ArchiveOrder:
    order_id: str


OrderCommand = Union[ArchiveOrder, """


def add_member(path: Path, union: str, addition: str) -> None:
    source = path.read_text()
    assert source.count(f"\n{union} = Union[") == 1, f"{path} no longer declares {union} as one Union[...]"
    path.write_text(source.replace(f"\n{union} = Union[", addition, 1))


def test_an_unhandled_event_or_command_fails_mypy(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    add_member(src / "app/eventlog/events.py", "Event", NEW_EVENT)
    add_member(src / "commands/handlers.py", "OrderCommand", NEW_COMMAND)

    out, err, status = mypy.run(
        [
            "--config-file", str(ROOT / "pyproject.toml"),
            "--cache-dir", str(tmp_path / "mypy-cache"),
            "--no-error-summary", "--hide-error-context",
            str(src / "commands/order.py"), str(src / "commands/handlers.py"),
        ]
    )  # fmt: skip

    errors = [line for line in out.splitlines() if ": error: " in line]
    assert status == 1, (out, err)
    assert any("order.py" in e and 'assert_never" has incompatible type "OrderArchived"' in e for e in errors), out
    assert any("handlers.py" in e and 'assert_never" has incompatible type "ArchiveOrder"' in e for e in errors), out
    assert all("assert_never" in e for e in errors), out  # the additions are the only cause
