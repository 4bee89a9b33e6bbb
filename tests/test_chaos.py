"""A short chaos run (`make chaos` runs longer ones): load, killed workers, killed Redis; nothing lost."""

from __future__ import annotations

import os

from app.config import Settings
from tests.chaos.run import run


def test_chaos_run_loses_nothing_applies_nothing_twice_and_serves_no_5xx(base_settings: Settings) -> None:
    report = run(base_settings, duration=float(os.environ.get("CHAOS_SECONDS", "40")), seed=7)
    print(report)
    assert sum(report.faults.values()) >= 5, report
    assert report.commands_accepted > 100, report
    assert report.server_errors_5xx == 0, report
    assert report.events_in_log == report.commands_accepted, report
    assert (report.events_lost, report.duplicates_applied) == (0, 0), report
