"""The UIs as people use them, in headless Chromium (Debian's, driven by Playwright).

Swagger UI loads with no network beyond this machine, authorizes, runs POST /orders and shows 201;
rq-dashboard shows the running worker; the admin page renders; the AsyncAPI page renders offline too.
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

from tests.support import Env, wait_for, web_server, workers

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium installed (apt-get install chromium; .ci/run installs it)"
)


@pytest.fixture
def site(fresh_env: Env) -> Iterator[str]:
    """The web app under gunicorn, with a relay, a projector and an rq worker."""
    with web_server(fresh_env) as base, workers(fresh_env, ("relay",), ("projector",), ("rqworker",)):
        yield base


@pytest.fixture
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield chromium
        chromium.close()


def offline(page: object) -> list[str]:
    """Let the page reach this machine only; the list fills with what it tried to fetch from beyond."""
    outside: list[str] = []

    def only_this_machine(route: object) -> None:
        url = route.request.url  # type: ignore[attr-defined]
        if urlparse(url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()  # type: ignore[attr-defined]
        else:
            outside.append(url)
            route.abort()  # type: ignore[attr-defined]

    page.route("**/*", only_this_machine)  # type: ignore[attr-defined]
    return outside


def test_swagger_ui_works_offline_authorizes_and_places_an_order(site: str, browser: object, fresh_env: Env) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1800})  # type: ignore[attr-defined]
    outside = offline(page)
    page.goto(f"{site}/docs")
    page.wait_for_selector("text=orderstream")
    page.click("button.authorize")
    page.fill(".auth-container input", fresh_env.settings.admin_token or "")
    page.click(".auth-btn-wrapper button.authorize")
    page.click(".auth-btn-wrapper button.btn-done")
    operation = page.locator(".opblock-post", has=page.locator(".opblock-summary-path[data-path='/orders']"))
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table tr.response td.response-col_status").first
    status.wait_for(timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "swagger-ui.png"), full_page=False)
    assert status.inner_text().strip() == "201"
    assert outside == [], f"Swagger UI reached beyond this machine: {outside}"
    assert fresh_env.scalar("SELECT count(*) FROM events WHERE type = 'OrderCreated'") == 1


def test_rq_dashboard_shows_the_running_worker(site: str, browser: object, fresh_env: Env) -> None:
    context = browser.new_context(  # type: ignore[attr-defined]
        http_credentials={"username": "admin", "password": fresh_env.settings.admin_token or ""},
        viewport={"width": 1280, "height": 800},
    )
    page = context.new_page()
    page.goto(f"{site}/rq/0/view/workers")
    page.wait_for_selector(f"text={fresh_env.settings.rq_queue}", timeout=20_000)
    page.screenshot(path=str(ARTIFACTS / "rq-dashboard.png"))
    assert "idle" in page.content() or "busy" in page.content()


def test_the_admin_page_renders(site: str, browser: object, fresh_env: Env) -> None:
    context = browser.new_context(  # type: ignore[attr-defined]
        http_credentials={"username": "admin", "password": fresh_env.settings.admin_token or ""},
        viewport={"width": 1280, "height": 900},
    )
    page = context.new_page()
    requests.post(f"{site}/orders", json={"customer_id": "c", "currency": "EUR",
                  "items": [{"sku": "A", "quantity": 1, "unit_price": "1.00"}]},
                  headers={"Authorization": f"Bearer {fresh_env.settings.admin_token}"}, timeout=5)  # fmt: skip
    token = {"Authorization": f"Bearer {fresh_env.settings.admin_token}"}
    wait_for(lambda: requests.get(f"{site}/admin/relay", headers=token, timeout=5).json()["leader"], what="a leader")
    page.goto(f"{site}/admin")
    page.wait_for_selector("h2:text('Streams')")
    page.screenshot(path=str(ARTIFACTS / "admin.png"), full_page=True)
    assert page.locator("table").count() == 5  # relay, projections, fulfilment, webhooks, streams
    assert page.locator("h2:text('Fulfilment') + table th").first.text_content() == "reserved"
    assert "none registered" in (page.locator("h2:text('Webhooks') + table").text_content() or "")
    assert "orderstream-relay:" in page.content()


def test_the_asyncapi_page_renders_every_message_offline(fresh_env: Env, browser: object) -> None:
    """The AsyncAPI project's renderer, vendored: every event's stream and webhook message, nothing fetched
    from beyond this machine."""
    from app.eventlog.events import EVENT_TYPES

    page = browser.new_page(viewport={"width": 1600, "height": 1200})  # type: ignore[attr-defined]
    outside = offline(page)
    with web_server(fresh_env) as site:
        page.goto(f"{site}/docs/asyncapi")
        page.wait_for_selector("[id='message-CustomerDataErased.webhook']", state="attached", timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "asyncapi.png"))
    for name in EVENT_TYPES:
        assert page.locator(f"[id='message-{name}']").count() == 1, name
        assert page.locator(f"[id='message-{name}.webhook']").count() == 1, name
    assert page.get_by_text("orderstream events").count() > 0
    assert outside == [], f"the AsyncAPI page reached beyond this machine: {outside}"


ATTACK_PAGE = """<!doctype html><html><body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe><iframe name="sink3"></iframe><iframe name="sink4"></iframe>
<form id="order" method="post" action="{site}/orders" enctype="text/plain" target="sink1">
  <input name='{{"customer_id":"victim","currency":"EUR","items":[{{"sku":"A","quantity":1,"unit_price":"1.00"}}],"x":"'
         value='"}}'></form>
<form id="rebuild" method="post" action="{site}/admin/projections/order_summaries/rebuild" target="sink2"></form>
<form id="requeue" method="post" action="{site}/rq/job/{job_id}/requeue" target="sink3"></form>
<form id="empty" method="post" action="{site}/rq/queue/{queue}/failed/empty" target="sink4"></form>
<img src="{site}/rq/requeue/{queue}">
<iframe src="{site}/rq/"></iframe>
<script>
  for (const id of ["order", "rebuild", "requeue", "empty"]) document.getElementById(id).submit();
  fetch("{site}/rq/requeue/{queue}", {{method: "POST", credentials: "include", mode: "no-cors"}});
  fetch("{site}/rq/job/{job_id}/requeue", {{method: "POST", credentials: "include", mode: "no-cors"}});
</script></body></html>"""


@pytest.fixture
def attacker() -> Iterator[tuple[str, list[str]]]:
    """A web server on another local origin (another port) serving one page, set per test."""
    import http.server
    import threading

    page: list[str] = [""]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page[0].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", page
    finally:
        server.shutdown()


def test_a_page_on_another_origin_cannot_change_anything_for_a_logged_in_operator(
    site: str, browser: object, fresh_env: Env, attacker: tuple[str, list[str]]
) -> None:
    from rq import Queue
    from rq.job import JobStatus

    queue = Queue(fresh_env.settings.rq_queue, connection=fresh_env.redis)
    job = queue.enqueue("workers.jobs.redrive_dead_letter", 424242)  # no such dead letter: it fails
    wait_for(lambda: job.get_status(refresh=True) == JobStatus.FAILED, timeout=30, what="a failed job")
    events, failed = fresh_env.scalar("SELECT count(*) FROM events"), queue.failed_job_registry.count
    origin, page_html = attacker
    page_html[0] = ATTACK_PAGE.format(site=site, job_id=job.id, queue=queue.name)

    context = browser.new_context(  # type: ignore[attr-defined]
        http_credentials={"username": "admin", "password": fresh_env.settings.admin_token or ""}
    )
    login = context.new_page()
    login.goto(f"{site}/rq/")  # the operator is logged in: the browser now sends Basic credentials itself
    login.close()
    forged: list[tuple[str, str, int]] = []
    settled: list[str] = []  # every request to orderstream, answered or not (the <img> answer is blocked by ORB)
    context.on("response", lambda r: r.url.startswith(site) and forged.append((r.request.method, r.url, r.status)))
    context.on("requestfinished", lambda r: r.url.startswith(site) and settled.append(r.url))
    context.on("requestfailed", lambda r: r.url.startswith(site) and settled.append(r.url))
    page = context.new_page()
    page.goto(f"{origin}/attack.html")
    wait_for(lambda: len(forged) >= 7 and len(settled) >= 8, timeout=20, what=f"the forged requests ({forged})")
    assert all(status == 403 for _method, _url, status in forged), forged
    assert fresh_env.scalar("SELECT count(*) FROM events") == events
    assert fresh_env.scalar("SELECT count(*) FROM projection_rebuilds") == 0
    assert job.get_status(refresh=True) == JobStatus.FAILED and queue.failed_job_registry.count == failed

    # The same request from orderstream's own page goes through: the refusal was about the origin.
    page.goto(f"{site}/rq/")
    first_enqueued = job.enqueued_at
    status = page.evaluate(f"fetch('/rq/job/{job.id}/requeue', {{method: 'POST'}}).then(r => r.status)")
    job.refresh()
    assert status == 200 and job.enqueued_at is not None and job.enqueued_at > first_enqueued  # requeued
