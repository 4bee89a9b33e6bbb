"""rq worker settings (`rq worker -c workers.preload`, in the Procfile): no setting, only imports.

rq runs each job in a work-horse forked from the worker. A module the worker imported before the fork
is there already; one it did not is imported again by every work-horse, which costs some 0.4 s of
CPU, per job. The upkeep jobs run every few seconds: without this, importing would be most of the
rq worker's work (rq's documentation suggests the same: preload what jobs import).
"""

from __future__ import annotations

from workers import jobs, upkeep
from workers.fulfilment import deadlines
from workers.webhooks import dispatch, send

__all__ = ["deadlines", "dispatch", "jobs", "send", "upkeep"]
