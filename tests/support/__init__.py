"""What the tests share, in one place: `from tests.support import ...`.

Test modules never import each other (tests/unit/test_suite_layout.py checks): a helper two of them
need lives here, in the module of its concern, and is exported below.

- environments  an isolated database and key prefix on the real services; clients of them
- polling       waiting with a bounded timeout
- processes     real workers, the web app under gunicorn, a worker loop in a thread
- orders        the sample order; orders placed over HTTP or written into the log
- streams       entries, consumer groups and pending entries on the Redis Streams
- projections   a projection compared with a rebuild from the log
- faults        a Redis server of the test's own, a TCP proxy that cuts a link
- routes        every route the app serves, with sample URL values and bodies
"""

from tests.support.environments import Env, admin, api_client, database_url_for, ensure_reachable, isolated_env
from tests.support.faults import REDIS_SERVER, RedisServer, TcpProxy
from tests.support.orders import META, ORDER, created, events_of, place, shown, write_history, write_orders
from tests.support.polling import answers, wait_for
from tests.support.processes import (
    BIN,
    GUNICORN,
    Worker,
    in_thread,
    relay_loop,
    upkeep,
    upkeep_finished_since,
    web_server,
    workers,
)
from tests.support.projections import (
    assert_exactly_once,
    converged,
    reacted_to_all,
    rebuilt,
    rebuilt_rows,
    snapshot,
)
from tests.support.receivers import CLOSE, HANG, HOLD, Receiver
from tests.support.routes import VALID_BODIES, Route, our_routes, routes
from tests.support.streams import (
    GROUP,
    NO_IDLE_CLAIM,
    TAKEOVER_S,
    consumer_groups,
    group_consumers,
    pending,
    pending_ids,
    read_as,
    stream_entries,
)

__all__ = [
    "BIN",
    "CLOSE",
    "GROUP",
    "GUNICORN",
    "HANG",
    "HOLD",
    "META",
    "NO_IDLE_CLAIM",
    "ORDER",
    "REDIS_SERVER",
    "TAKEOVER_S",
    "VALID_BODIES",
    "Env",
    "Receiver",
    "RedisServer",
    "Route",
    "TcpProxy",
    "Worker",
    "admin",
    "answers",
    "api_client",
    "assert_exactly_once",
    "consumer_groups",
    "converged",
    "created",
    "database_url_for",
    "ensure_reachable",
    "events_of",
    "group_consumers",
    "in_thread",
    "isolated_env",
    "our_routes",
    "pending",
    "pending_ids",
    "place",
    "reacted_to_all",
    "read_as",
    "rebuilt",
    "rebuilt_rows",
    "relay_loop",
    "routes",
    "shown",
    "snapshot",
    "stream_entries",
    "upkeep",
    "upkeep_finished_since",
    "wait_for",
    "web_server",
    "workers",
    "write_history",
    "write_orders",
]
