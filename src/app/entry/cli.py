"""The `orderstream` command: run the whole service (app/processes/launcher.py), apply migrations, run one
worker process, manage tokens."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from app.platform import schema
from app.platform.config import InsecureAdminToken, Settings, check_admin_token


@contextlib.contextmanager
def service_env() -> Iterator[dict[str, str]]:
    """DATABASE_URL and REDIS_URL from the environment, or from the embedded servers if unset."""
    given = {k: os.environ[k] for k in ("DATABASE_URL", "REDIS_URL") if os.environ.get(k)}
    if len(given) == 2:
        yield given
        return
    if given:
        raise click.UsageError("set both DATABASE_URL and REDIS_URL, or neither to use the embedded servers")
    from app.processes.embedded import DATA_DIR
    from app.processes.servers import embedded_services

    click.echo(f"DATABASE_URL and REDIS_URL are unset: using the embedded PostgreSQL and Redis in {DATA_DIR}")
    with embedded_services() as env:
        yield env


def _run_child(argv: list[str], env: dict[str, str]) -> int:
    """Run a child to completion. Ctrl-C reaches it through the terminal and SIGTERM is passed on;
    either way we wait for it to finish stopping."""
    child = subprocess.Popen(argv, env={**os.environ, **env})
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: child.send_signal(signum))
    try:
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                pass  # the child got the same SIGINT from the terminal: wait for it to stop
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.group()
def main() -> None:
    """orderstream: an event-sourced order service."""


@main.command()
def migrate() -> None:
    """Apply the database migrations (alembic upgrade head)."""
    schema.upgrade(Settings.from_env().database_url)
    click.echo("database schema is current")


@main.command()
@click.option("--concurrency", default="", help="how many of each Procfile process, e.g. projector=2,relay=2")
def run(concurrency: str) -> None:
    """Start every process of the Procfile under supervisord (a crash is a restart, not an outage)."""
    from app.processes.embedded import EmbeddedServersMissing
    from app.processes.launcher import run as launch

    given_token = os.environ.get("ORDERSTREAM_ADMIN_TOKEN")
    if given_token:  # refused before anything starts, rather than by each process as it boots
        try:
            check_admin_token(given_token)
        except InsecureAdminToken as exc:
            raise click.ClickException(str(exc)) from exc
    try:
        sys.exit(launch(concurrency, _banner))
    except ValueError as exc:  # a --concurrency naming no process of the Procfile
        raise click.BadParameter(str(exc), param_hint="--concurrency") from exc
    except EmbeddedServersMissing as exc:  # no URLs and an install without the embedded extra
        raise click.ClickException(str(exc)) from exc


def _banner(env: dict[str, str]) -> None:
    """Where everything is (once the database is migrated, before the processes start)."""
    base = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}"
    if os.environ.get("ORDERSTREAM_ADMIN_TOKEN"):
        token_line = "  Admin token   from ORDERSTREAM_ADMIN_TOKEN"
    else:
        token_line = f"  Admin token   {_development_token(env['DATABASE_URL'])}  (development; Authorize in /docs)"
    click.echo(
        f"\n  API           {base}/orders\n  Swagger UI    {base}/docs\n  OpenAPI       {base}/openapi.json"
        f"\n  AsyncAPI      {base}/docs/asyncapi  ({base}/asyncapi.json: the streams and webhooks)"
        f"\n  rq-dashboard  {base}/rq  (user: anything, password: the token)\n  Admin         {base}/admin"
        f"\n{token_line}\n  Processes     {Path(sys.executable).parent / 'supervisorctl'} -c"
        f" {env['ORDERSTREAM_RUN_DIR']}/supervisord.conf status"
        "\n\n  Ctrl-C stops everything.\n"
    )


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("argv", nargs=-1, type=click.UNPROCESSED, required=True)
def services(argv: tuple[str, ...]) -> None:
    """Run a command with DATABASE_URL/REDIS_URL set (embedded servers if they are unset)."""
    from app.processes.embedded import EmbeddedServersMissing

    try:
        with service_env() as env:
            code = _run_child(list(argv), env)
    except EmbeddedServersMissing as exc:  # no URLs and an install without the embedded extra
        raise click.ClickException(str(exc)) from exc
    sys.exit(code)


@main.command()
@click.argument("projection")
def rebuild(projection: str) -> None:
    """Rebuild a projection from the event store (shadow tables, then an atomic swap), with progress."""
    from tqdm import tqdm

    from app.platform.db import make_engine
    from queries.projections import PROJECTIONS
    from workers.rebuild import rebuild as rebuild_projection
    from workers.replay import Progress

    if projection not in PROJECTIONS:
        raise click.BadParameter(f"choose one of {', '.join(PROJECTIONS)}", param_hint="PROJECTION")
    engine = make_engine(Settings.from_env(), pool_size=2)
    with tqdm(unit="event", unit_scale=True, desc=f"rebuilding {projection}") as bar:

        def show(step: str, progress: Progress) -> None:
            bar.total = progress.total
            bar.update(progress.done - bar.n)
            bar.set_postfix_str(step)

        done = rebuild_projection(engine, PROJECTIONS[projection], on_progress=show)
    engine.dispose()
    click.echo(f"{projection} rebuilt from {done.done} events ({done.rate:.0f} events/s)")


@main.command()
def catalogue() -> None:
    """Print the event catalogue (every event type and schema version) as Markdown."""
    from app.eventlog.catalogue import catalogue_markdown

    click.echo(catalogue_markdown(), nl=False)


@main.group()
def tokens() -> None:
    """Manage API tokens (stored hashed; a token is shown once, when created)."""


@tokens.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["customer", "reader", "writer", "admin"]), required=True)
@click.option("--customer-id", default=None, help="the customer a customer token acts for (and only it)")
@click.option("--personal-data", is_flag=True, help="a reader or writer token that may see personal data")
def tokens_create(name: str, role: str, customer_id: str | None, personal_data: bool) -> None:
    """Create a token NAME with a role and print it (the only time it is shown)."""
    from app.platform.db import make_engine
    from app.platform.tokens import InvalidTokenName, create_token

    if role == "customer" and customer_id is None:
        raise click.BadParameter("a customer token needs --customer-id", param_hint="--customer-id")
    if role != "customer" and customer_id is not None:
        raise click.BadParameter("only a customer token takes --customer-id", param_hint="--customer-id")
    if role in ("customer", "admin") and personal_data:
        raise click.BadParameter(f"a {role} token sees what it may without it", param_hint="--personal-data")
    try:
        db = make_engine(Settings.from_env(), pool_size=1)
        click.echo(create_token(db, name, role, customer_id, personal_data))
    except InvalidTokenName as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from exc


@main.group()
def keys() -> None:
    """The master key and customers' data keys (personal data)."""


@keys.command("new-master-key")
def keys_new_master_key() -> None:
    """Print a new random master key, for ORDERSTREAM_MASTER_KEY (keep it in a secret store)."""
    from app.eventlog.personal import new_master_key

    click.echo(new_master_key())


@keys.command("reapply-erasures")
def keys_reapply_erasures() -> None:
    """Destroy again every data key an erasure in the log destroyed: run it after restoring the
    database from a backup taken before some erasures (with their events; see README)."""
    from app.platform.db import make_engine
    from commands.erasure import reapply_erasures

    db = make_engine(Settings.from_env(), pool_size=1)
    with db.begin() as conn:
        destroyed = reapply_erasures(conn, "orderstream-keys")
    db.dispose()
    click.echo(f"{destroyed} data keys destroyed again (erasures recorded in the log)")


@keys.command("rotate")
def keys_rotate() -> None:
    """Re-wrap every data key and webhook signing secret under ORDERSTREAM_MASTER_KEY (the old master
    key given in ORDERSTREAM_PREVIOUS_MASTER_KEYS); no event is read or rewritten."""
    from app.eventlog.keys import Keyring
    from app.platform.db import make_engine
    from workers.webhooks.endpoints import rewrap

    settings = Settings.from_env()
    keyring = Keyring.from_settings(settings)
    db = make_engine(settings, pool_size=1)
    with db.begin() as conn:
        moved, secrets = keyring.rotate(conn), rewrap(conn, keyring)
    db.dispose()
    click.echo(f"{moved} data keys and {secrets} webhook secrets re-wrapped under master key {keyring.master.id}")


@tokens.command("list")
def tokens_list() -> None:
    """List tokens: name, role, created, revoked (never the tokens themselves)."""
    from app.platform.db import make_engine
    from app.platform.tokens import list_tokens

    for t in list_tokens(make_engine(Settings.from_env(), pool_size=1)):
        revoked = f"revoked {t['revoked_at']:%Y-%m-%d %H:%M}" if t["revoked_at"] else "active"
        click.echo(f"{t['name']:<24} {t['role']:<7} created {t['created_at']:%Y-%m-%d %H:%M}  {revoked}")


@tokens.command("revoke")
@click.argument("name")
def tokens_revoke(name: str) -> None:
    """Revoke the token NAME (effective within seconds)."""
    from app.platform.db import make_engine
    from app.platform.tokens import revoke_token

    if not revoke_token(make_engine(Settings.from_env(), pool_size=1), name):
        raise click.ClickException(f"no active token named {name!r}")
    click.echo(f"revoked {name}")


def _development_token(database_url: str) -> str:
    """The token `make run` prints: kept in the data directory, created on first start."""
    from app.platform.db import make_engine
    from app.platform.tokens import create_token, token_is_valid
    from app.processes.embedded import DATA_DIR

    db = make_engine(Settings(database_url=database_url, redis_url=""), pool_size=1)
    saved = DATA_DIR / "dev-admin-token"
    try:
        if saved.exists() and token_is_valid(db, saved.read_text().strip()):
            return saved.read_text().strip()
        name = f"dev-admin-{os.getpid()}"
        token = create_token(db, name, "admin")
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        saved.write_text(token)
        saved.chmod(0o600)
        return token
    finally:
        db.dispose()


@main.command()
def relay() -> None:
    """Run an outbox relay (one is leader, others stand by)."""
    from workers.main import run_relay

    run_relay(Settings.from_env())


@main.command()
def upkeep() -> None:
    """Run rq's cron scheduler, which enqueues the upkeep jobs (trimming, purging) for the rq worker."""
    from workers.main import run_upkeep

    run_upkeep(Settings.from_env())


@main.command()
@click.option("--projection", default="order_summaries", show_default=True)
@click.option("--name", default=None, help="consumer name (default: host-pid)")
def projector(projection: str, name: str | None) -> None:
    """Run one consumer of a projection's consumer group."""
    from workers.main import run_projector

    run_projector(Settings.from_env(), projection, name)


@main.command()
@click.option("--name", default=None, help="consumer name (default: host-pid)")
def fulfilment(name: str | None) -> None:
    """Run one fulfilment process manager (a consumer of its own group: several share the work)."""
    from workers.fulfilment.process import GROUP
    from workers.main import run_projector

    run_projector(Settings.from_env(), GROUP, name)


@main.command()
@click.option("--name", default=None, help="consumer name (default: host-pid)")
def webhooks(name: str | None) -> None:
    """Run one webhook dispatcher (a consumer of its own group): each event a registered endpoint
    wants becomes a delivery, which rq jobs carry out."""
    from workers.main import run_projector
    from workers.webhooks.dispatch import GROUP

    run_projector(Settings.from_env(), GROUP, name)
