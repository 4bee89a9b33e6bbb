"""Real processes and loops of the service under test: workers (`orderstream relay|projector`, rq),
the web app under gunicorn, a worker loop in a thread."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rq.cron import get_cron_job_history_key
from rq.job import Job, JobStatus

from tests.support.environments import Env
from tests.support.polling import answers, wait_for
from workers.upkeep import job_name
from workers.webhooks.dispatch import sender_queue

BIN = Path(sys.executable).parent


class Worker:
    """A real worker process (`orderstream relay|projector|...`, an rq worker, the webhook sender),
    killable like in production."""

    def __init__(self, env: Env, *args: str, **extra_env: str) -> None:
        self.args = args
        if args == ("rqworker",):  # a real rq worker on this environment's queue
            argv = [str(BIN / "rq"), "worker", "--url", env.settings.redis_url, env.settings.rq_queue]
        elif args == ("sender",):  # the Procfile's webhook sender: rq's SimpleWorker on the webhooks' queue
            argv = [str(BIN / "rq"), "worker", "--url", env.settings.redis_url, "-c", "workers.preload",
                    "-w", "rq.worker.SimpleWorker", sender_queue(env.settings)]  # fmt: skip
        else:
            argv = [str(BIN / "orderstream"), *args]
        # A file, not a pipe: a pipe nobody reads fills up and blocks a chatty worker.
        self.output = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(argv, env=env.process_env(**extra_env), stdout=self.output, stderr=self.output)

    def log(self) -> str:
        """What the worker printed so far."""
        self.output.seek(0)
        return self.output.read().decode(errors="replace")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self) -> int:
        self.proc.terminate()
        return self.proc.wait(20)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.terminate()


@contextmanager
def workers(env: Env, *specs: tuple[str, ...], **extra_env: str) -> Iterator[list[Worker]]:
    started = [Worker(env, *spec, **extra_env) for spec in specs]
    try:
        yield started
    except BaseException:
        for worker in started:  # shown by pytest with the failure
            print(f"--- {' '.join(worker.args)} (pid {worker.proc.pid}) ---\n{worker.log()[-4000:]}")
        raise
    finally:
        for worker in started:
            worker.stop()


@contextmanager
def in_thread(run: Callable[[threading.Event], None]) -> Iterator[threading.Event]:
    """Run a worker loop in a thread for the duration of the block."""
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(15)
        assert not thread.is_alive(), "worker thread did not stop"


def relay_loop(env: Env) -> Callable[[threading.Event], None]:
    """The relay's loop, for `in_thread`: publishes the environment's outbox until stopped."""
    from workers.relay import Relay

    return lambda stop: Relay(env.settings, env.engine, env.redis, stop).run()


GUNICORN = [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "-w", "2"]


@contextmanager
def web_server(env: Env, log: Path | None = None, **extra_env: str) -> Iterator[str]:
    """The web app under gunicorn (the production config, two workers); yields its base URL."""
    from app.processes.embedded import free_port

    port = free_port()
    server = subprocess.Popen(
        [*GUNICORN, "-b", f"127.0.0.1:{port}", "wsgi:app"],
        env=env.process_env(**extra_env),
        cwd=Path(__file__).resolve().parents[2],  # the checkout: gunicorn.conf.py, wsgi.py
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb") if log else subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(f"{base}/healthz"), timeout=60, interval=0.2, what="the web server")
        yield base
    finally:
        server.terminate()
        server.wait(30)


@contextmanager
def upkeep(env: Env, **extra_env: str) -> Iterator[list[Worker]]:
    """rq's cron scheduler (`orderstream upkeep`) and an rq worker that runs its jobs, preloaded as the
    Procfile's is (`-c workers.preload`)."""
    with workers(env, ("upkeep",), ("rqworker",), RQ_CONFIG="workers.preload", **extra_env) as started:
        yield started


def upkeep_finished_since(env: Env, job: Callable[[], int], since: float) -> bool:
    """Whether a run of this upkeep job, enqueued after `since` (epoch seconds), has finished."""
    ids = env.redis.zrangebyscore(get_cron_job_history_key(job_name(env.settings, job)), since, "+inf")
    runs = Job.fetch_many([i.decode() for i in ids], connection=env.redis)
    return any(run is not None and run.get_status() == JobStatus.FINISHED for run in runs)
