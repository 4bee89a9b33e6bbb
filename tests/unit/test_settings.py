"""Settings: each one declared once, read from its variable, and listed with its default in the README."""

from __future__ import annotations

import re
from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from app.platform.config import Settings
from workers.consumers import GROUPS

README = Path(__file__).resolve().parents[2] / "README.md"
URLS = {"DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://x"}


def configuration_table() -> dict[str, str]:
    """README's configuration table: each variable named in a row's first cell, with its default cell."""
    section = README.read_text().split("## Configuration", 1)[1]
    rows = [line.split("|")[1:3] for line in section.splitlines() if line.startswith("| `")]
    return {name: default.strip() for names, default in rows for name in re.findall(r"`([A-Z0-9_]+)`", names)}


def test_every_setting_is_in_the_readme_with_its_default() -> None:
    table = configuration_table()
    for f in fields(Settings):
        variable = f.metadata["variable"]
        assert variable in table, f"{variable} ({f.name}) is missing from README's configuration table"
        if isinstance(f.default, int | str) and not isinstance(f.default, bool) and f.metadata["unset"] is None:
            assert table[variable] == f"`{f.default}`", variable
    # An empty projections setting means every registered consumer group: the README shows that list.
    assert table["ORDERSTREAM_PROJECTIONS"] == f"`{','.join(GROUPS)}`"


def test_the_defaults_are_those_of_an_empty_environment() -> None:
    declared = {f.name: f.default for f in fields(Settings) if f.default is not MISSING}
    read = Settings.from_env(URLS)
    assert {name: getattr(read, name) for name in declared} == declared
    assert (read.database_url, read.redis_url, read.max_waiting_reads) == (*URLS.values(), 3)


def test_each_variable_is_parsed_as_its_setting_says() -> None:
    env = {
        **URLS,
        "PORT": "9000",
        "ORDERSTREAM_PROJECTIONS": " order_summaries, ,sales_stats ",
        "ORDERSTREAM_STREAMS_REDIS_URL": "",
        "ORDERSTREAM_STREAMS_CLUSTER": "yes",
        "ORDERSTREAM_RATE_LIMIT": "5/second",
        "WEB_THREADS": "1",
    }
    read = Settings.from_env(env)
    assert (read.port, read.projections, read.streams_redis_url, read.streams_cluster) == (
        9000,
        ("order_summaries", "sales_stats"),
        None,
        True,
    )
    assert (read.rate_limit, read.max_waiting_reads) == ("5/second", 0)  # one thread: no read may wait
    assert Settings.from_env({**env, "ORDERSTREAM_MAX_WAITING_READS": "7"}).max_waiting_reads == 7
    assert Settings.from_env({**URLS, "ORDERSTREAM_STREAMS_CLUSTER": "no"}).streams_cluster is False


def test_the_servers_are_required() -> None:
    with pytest.raises(RuntimeError, match=r"^DATABASE_URL and REDIS_URL not set"):
        Settings.from_env({})
    with pytest.raises(RuntimeError, match=r"^REDIS_URL not set"):
        Settings.from_env({"DATABASE_URL": "postgresql://x/y", "REDIS_URL": ""})
    with pytest.raises(ValueError, match="invalid literal"):
        Settings.from_env({**URLS, "ORDERSTREAM_STREAM_PARTITIONS": "four"})
