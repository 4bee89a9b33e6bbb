"""The unit layer: pure functions, no PostgreSQL, no Redis, no environment variables; seconds in all.

pytest loads tests/conftest.py for these tests too. Its fixtures start or reach the services only when
a test asks for them; here the root of them all is overridden so that a unit test asking for a
database, a client or an app fails at once, saying where such a test belongs, instead of starting the
embedded servers.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def base_settings() -> None:
    """Refuses: every service fixture (env, fresh_env, app, client, order_id) depends on this one."""
    pytest.fail("unit tests use no PostgreSQL or Redis: a test that needs them belongs in tests/, not tests/unit/")
