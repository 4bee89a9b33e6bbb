"""gunicorn settings for production: `gunicorn -c gunicorn.conf.py wsgi:app` (the Procfile does this)."""

import multiprocessing
import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
# Sync workers: the request path is short and CPU-bound; twice the cores plus one is gunicorn's advice.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
worker_class = "sync"
timeout = 30  # a worker stuck longer than this is killed and replaced
graceful_timeout = 20  # on SIGTERM, in-flight requests get this long to finish
keepalive = 5
max_requests = 20_000  # recycle workers now and then, with jitter so they do not all restart at once
max_requests_jitter = 2_000
control_socket_disable = True  # several gunicorns on one host would otherwise share one control socket
accesslog = "-"
access_log_format = (
    '{"logger": "access", "remote": "%(h)s", "method": "%(m)s", "path": "%(U)s", "status": %(s)s, '
    '"bytes": "%(B)s", "duration_us": %(D)s, "request_id": "%({x-request-id}o)s"}'
)


def post_worker_init(worker):
    """The app's own logs as JSON, like every other orderstream process."""
    from app.logs import configure_logging

    configure_logging()


def child_exit(server, worker):
    """Drop a dead worker's live gauges from the multiprocess metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
