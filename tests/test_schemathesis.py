"""Property-based conformance: schemathesis against the live /openapi.json of a running server.

Every operation, with a valid admin token so that it reaches past auth, and the checks
not_a_server_error, status_code_conformance, content_type_conformance,
response_headers_conformance and response_schema_conformance.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import requests

from app.embedded import free_port
from tests.support import BIN, Env, wait_for

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


def test_schemathesis_finds_no_nonconformance(fresh_env: Env, tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "gunicorn"), "-w", "2", "--no-control-socket", "-b", f"127.0.0.1:{port}", "wsgi:app"],
        env=fresh_env.process_env(ORDERSTREAM_READ_WAIT_MS="50"),
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "server.log").open("wb"),
    )
    try:
        wait_for(lambda: _up(port), timeout=60, interval=0.2, what="the server")
        run = subprocess.run(
            [
                str(BIN / "schemathesis"), "run", f"http://127.0.0.1:{port}/openapi.json",
                "--checks", CHECKS,
                "--header", f"Authorization: Bearer {fresh_env.settings.admin_token}",
                "--max-examples", os.environ.get("SCHEMATHESIS_EXAMPLES", "30"),
                "--seed", os.environ.get("SCHEMATHESIS_SEED", "20261127"),
                "--request-timeout", "10",
                "--no-color",
            ],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout[-6000:] + (tmp_path / "server.log").read_text()[-4000:]
        assert " passed" in run.stdout and "failures" not in run.stdout.split("SUMMARY")[-1].lower()
    finally:
        server.terminate()
        server.wait(30)


def _up(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/openapi.json", timeout=2).status_code == 200
    except requests.RequestException:
        return False
