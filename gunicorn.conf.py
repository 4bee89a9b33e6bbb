"""gunicorn settings for production: `gunicorn -c gunicorn.conf.py wsgi:app` (the Procfile does this)."""

import json
import multiprocessing
import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
# Twice the cores plus one processes (gunicorn's advice), each with a few threads: the request path
# is short and CPU-bound, but a read-your-writes read (min_version) may wait for the projection, and
# it must hold a thread, not a whole process. Each process lets at most threads - 1 reads wait for
# the projection at once (ORDERSTREAM_MAX_WAITING_READS), and a body must arrive within
# ORDERSTREAM_BODY_TIMEOUT_MS, so neither can take every thread of a process.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 30  # a worker whose main loop is silent this long (a hung process) is killed and replaced
graceful_timeout = 20  # on SIGTERM, in-flight requests get this long to finish
# No connection is kept alive after a response: a client that announced a body and never sends it
# would otherwise hold a thread while gunicorn drains it. Behind a proxy (nginx, a load balancer),
# the proxy keeps the clients' connections. gunicorn reads request lines and headers with no time
# limit of its own: exposed to untrusted networks, put a buffering proxy in front (nginx does).
keepalive = 0
max_requests = 20_000  # recycle workers now and then, with jitter so they do not all restart at once
max_requests_jitter = 2_000
control_socket_disable = True  # several gunicorns on one host would otherwise share one control socket
# gunicorn refuses these itself, before the app: request line over 4094 bytes (414), more than 100
# header fields or one over 8190 bytes (431). Its answers are problem+json too (post_worker_init).
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
accesslog = "-"
_process = json.dumps(os.environ.get("ORDERSTREAM_PROCESS", "web")).replace("%", "%%")  # web.1 under orderstream run
access_log_format = (
    '{"logger": "access", "process": ' + _process + ", "
    '"remote": "%(h)s", "method": "%(m)s", "path": "%(U)s", "status": %(s)s, '
    '"bytes": "%(B)s", "duration_us": %(D)s, "request_id": "%({x-request-id}o)s"}'
)


def post_worker_init(worker):
    """The app's own logs as JSON, like every other orderstream process; gunicorn's own refusals
    (malformed requests, 414, 431) as problem+json, like the app's."""
    from app.platform.gunicorn_errors import answer_refusals_as_problems
    from app.platform.logs import configure_logging

    configure_logging()
    answer_refusals_as_problems()


def child_exit(server, worker):
    """Drop a dead worker's live gauges from the multiprocess metrics."""
    from app.platform.metrics import forget_process

    forget_process(worker.pid)
