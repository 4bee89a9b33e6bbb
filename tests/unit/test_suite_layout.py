"""The test suite's own layout: test modules never import each other, nor anyone's private helpers.

A helper that a second module needs moves to tests/support/ (exported by tests.support); importing it
from the test module that happened to define it first couples two test files, runs the first one's
module-level code in the second, and hides the helper from whoever looks for shared ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]


def offences(source: str, module: str, is_package: bool = False) -> list[str]:
    """What the source of `module` imports that it must not: a test module (test_*), or a private
    name (_*) from anywhere in the suite. Nested and relative imports count too."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            imported = [(".".join(p for p in (base, node.module or "") if p), alias.name) for alias in node.names]
        else:
            continue
        for source_module, name in imported:
            dotted = f"{source_module}.{name}" if name else source_module
            if not source_module.startswith("tests"):
                continue
            if any(part.startswith("test_") for part in dotted.split(".")):
                found.append(f"line {node.lineno}: imports the test module {dotted}")
            elif name is not None and name.startswith("_"):
                found.append(f"line {node.lineno}: imports the private {dotted}")
    return found


@pytest.mark.parametrize("path", sorted(TESTS.rglob("*.py")), ids=lambda p: str(p.relative_to(TESTS)))
def test_no_module_of_the_suite_imports_a_test_module_or_a_private_helper(path: Path) -> None:
    parts = path.relative_to(TESTS.parent).with_suffix("").parts
    is_package = parts[-1] == "__init__"
    module = ".".join(parts[:-1] if is_package else parts)
    assert offences(path.read_text(), module, is_package) == [], "move shared helpers to tests/support/"


@pytest.mark.parametrize(
    ("source", "refused"),
    [
        ("from tests.test_api import ORDER", True),
        ("from .test_api import place", True),
        ("from ..test_api import place", True),
        ("from tests import test_api", True),
        ("import tests.test_faults", True),
        ("def f():\n    from tests.test_eventstore import META", True),
        ("from tests.support.streams import _private", True),
        ("from tests.support import ORDER, place", False),
        ("from .conftest import something", False),
        ("from tests.chaos.run import run", False),
        ("from app.eventlog.money import parse_amount", False),
    ],
)
def test_the_check_sees_every_form_of_import(source: str, refused: bool) -> None:
    """Given this import in tests/unit/test_probe.py, then the check refuses it (or lets it be)."""
    assert bool(offences(source, "tests.unit.test_probe")) is refused
