"""The UIs as people use them, in headless Chromium (Debian's, driven by Playwright).

Swagger UI loads with no network beyond this machine, authorizes, runs POST /orders and shows 201;
rq-dashboard shows the running worker; the admin page renders. Screenshots go to test-artifacts/.
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


def test_swagger_ui_works_offline_authorizes_and_places_an_order(site: str, browser: object, fresh_env: Env) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1800})  # type: ignore[attr-defined]
    outside: list[str] = []

    def only_this_machine(route: object) -> None:
        url = route.request.url  # type: ignore[attr-defined]
        if urlparse(url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()  # type: ignore[attr-defined]
        else:
            outside.append(url)
            route.abort()  # type: ignore[attr-defined]

    page.route("**/*", only_this_machine)
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
    assert page.locator("table").count() == 3
    assert "orderstream-relay:" in page.content()
