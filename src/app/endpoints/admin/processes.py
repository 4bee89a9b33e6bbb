"""The processes of this instance, as supervisord runs them: state, restarts, failures.

Under `orderstream run`, supervisord's XML-RPC socket in the run directory (ORDERSTREAM_RUN_DIR)
says what runs; the event listener's records there say how often each was restarted, how it last
ended, and whether it was given up as failed. The embedded servers, when the instance uses them,
have a supervisord of their own (ORDERSTREAM_SERVERS_DIR), read the same way. Run some other way
(systemd, Kubernetes), the processes are that supervisor's to show, and this says so.
"""

from __future__ import annotations

import http.client
import os
import xmlrpc.client
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import marshmallow as ma
from flask.views import MethodView

from app.endpoints.admin import blp
from app.platform.api import ResponseSchema, operation
from app.processes.records import read_records
from app.processes.supervision import Supervisor, socket_url

STATES = ["running", "starting", "backoff", "stopping", "stopped", "exited", "fatal", "unknown"]


class ExitSchema(ResponseSchema):
    at = ma.fields.DateTime(required=True)
    how = ma.fields.String(required=True, metadata={"description": 'e.g. "terminated by SIGKILL; not expected"'})


class FailureSchema(ResponseSchema):
    at = ma.fields.DateTime(required=True)
    why = ma.fields.String(required=True)


class ProcessSchema(ResponseSchema):
    name = ma.fields.String(required=True, metadata={"example": "projector.1"})
    program = ma.fields.String(required=True, metadata={"description": "its Procfile line (or server)"})
    state = ma.fields.String(required=True, validate=ma.validate.OneOf(STATES))
    pid = ma.fields.Integer(allow_none=True, required=True)
    up_since = ma.fields.DateTime(allow_none=True, required=True)
    restarts = ma.fields.Integer(required=True, metadata={"description": "exits it was not asked for"})
    last_exit = ma.fields.Nested(ExitSchema, allow_none=True, required=True)
    failed = ma.fields.Nested(
        FailureSchema, allow_none=True, required=True,
        metadata={"description": "set when it kept crashing (or could not start) and was stopped"},
    )  # fmt: skip


class HealthSchema(ResponseSchema):
    status = ma.fields.String(
        required=True,
        validate=ma.validate.OneOf(["ok", "degraded", "failed"]),
        metadata={"description": "failed: a process was given up; degraded: one is not running (yet)"},
    )
    supervised = ma.fields.Boolean(required=True, metadata={"description": "run by `orderstream run`"})
    processes = ma.fields.List(ma.fields.Nested(ProcessSchema), required=True)
    note = ma.fields.String(metadata={"description": "why the processes cannot be shown, when they cannot"})


def process_states() -> dict[str, Any]:
    """What /admin/health shows: every supervised process (the instance's, and the embedded servers'
    when it uses them) and the instance's overall status."""
    run_dir = os.environ.get("ORDERSTREAM_RUN_DIR")
    if not os.environ.get("SUPERVISOR_SERVER_URL") or not run_dir:
        return {"status": "ok", "supervised": False, "processes": []}
    directories = [Path(run_dir)] + ([Path(os.environ["ORDERSTREAM_SERVERS_DIR"])]
                                      if os.environ.get("ORDERSTREAM_SERVERS_DIR") else [])  # fmt: skip
    processes: list[dict[str, Any]] = []
    for directory in directories:
        try:
            processes += _processes(directory)
        except (OSError, http.client.HTTPException, xmlrpc.client.Error) as exc:  # stopping, or gone: say so
            return {"status": "degraded", "supervised": True, "processes": processes,
                    "note": f"the supervisord of {directory} does not answer: {exc}"}  # fmt: skip
    if any(p["failed"] or p["state"] == "fatal" for p in processes):
        status = "failed"
    elif any(p["state"] != "running" for p in processes):
        status = "degraded"
    else:
        status = "ok"
    return {"status": status, "supervised": True, "processes": processes}


def _processes(directory: Path) -> list[dict[str, Any]]:
    records = read_records(directory)
    processes = []
    for info in Supervisor(socket_url(directory)).processes():
        record = records.get(info["name"], {})
        running = info["statename"] == "RUNNING"
        processes.append(
            {
                "name": info["name"],
                "program": info["group"] if info["group"] == "process-events" else info["name"].rsplit(".", 1)[0],
                "state": info["statename"].lower(),
                "pid": info["pid"] or None,
                "up_since": datetime.fromtimestamp(info["start"], UTC) if running else None,
                "restarts": record.get("restarts", 0),
                "last_exit": _dated(record.get("last_exit")),
                "failed": _dated(record.get("failed")),
            }
        )
    return processes


def _dated(event: dict[str, Any] | None) -> dict[str, Any] | None:
    """A record's event with its time as a datetime (the records hold ISO 8601 text)."""
    return {**event, "at": datetime.fromisoformat(event["at"])} if event else None


@blp.route("/health")
class Health(MethodView):
    @blp.response(200, HealthSchema)
    @operation("get_health")
    def get(self) -> Any:
        """This instance's processes: running or not, restarts, how each last ended, failures"""
        return process_states()
