"""Property-based conformance: schemathesis against the live /openapi.json of a running server.

Every operation, with a valid admin token so that it reaches past auth, and the checks
not_a_server_error, status_code_conformance, content_type_conformance,
response_headers_conformance and response_schema_conformance.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support import BIN, Env, web_server

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
    log = tmp_path / "server.log"
    with web_server(fresh_env, log, ORDERSTREAM_READ_WAIT_MS="50") as base:
        run = subprocess.run(
            [
                str(BIN / "schemathesis"), "run", f"{base}/openapi.json",
                "--checks", CHECKS,
                "--header", f"Authorization: Bearer {fresh_env.settings.admin_token}",
                "--max-examples", os.environ.get("SCHEMATHESIS_EXAMPLES", "30"),
                "--seed", os.environ.get("SCHEMATHESIS_SEED", "20261127"),
                "--request-timeout", "10",
                "--no-color",
            ],
            capture_output=True, text=True, timeout=600,
            cwd=tmp_path,  # its cache of found crashes goes there, not into the repository
        )  # fmt: skip
    assert run.returncode == 0, run.stdout[-6000:] + log.read_text()[-4000:]
    assert " passed" in run.stdout and "failures" not in run.stdout.split("SUMMARY")[-1].lower()
