"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against a real
API process and a real worker: log in, the runs list, a run's steps turning green live, a
step's messages and costs, an artifact downloaded, an approval decided, a run cancelled.

Screenshots of each page are saved under test-artifacts/ui/ for a reviewer to look at.
"""

from __future__ import annotations

import hashlib
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import text

from db.session import make_engine
from tests.integration.api.test_endpoints import start
from tests.support.stack import ROOT

SHOTS = ROOT / "test-artifacts" / "ui"
#: Chromium offline: no background calls to Google's hosts, which this network refuses.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LIVE = {
    "name": "ui-live",
    "steps": [
        {"key": "nap", "task": "t.sleep"},
        {"key": "work", "task": "t.loop", "after": ["nap"]},
        {"key": "make", "task": "t.artifact", "after": ["work"]},
    ],
}
GATED = {
    "name": "ui-gated",
    "steps": [{"key": "ship", "task": "t.item", "approve": {"title": "Ship it?", "group": "ops"}}],
}
SLOW = {"name": "ui-slow", "steps": [{"key": "nap", "task": "t.sleep"}]}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:  # scripts/services installs it; never skip silently
        pytest.fail("Debian's chromium is not installed (apt-get install chromium)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, api_url: str, key: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.goto(f"{api_url}/ui/runs")
    expect(tab).to_have_url(f"{api_url}/ui/login")  # no session: the login page
    tab.fill("#key", key)
    tab.click("button[type=submit]")
    expect(tab).to_have_url(f"{api_url}/ui/runs")
    yield tab
    context.close()
    assert errors == [], errors  # no script error on any page


def shot(page: Page, name: str, backend: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}-{backend}.png"), full_page=True)


def backend_of(api_url: str, api_settings: Any) -> str:
    return "sqlite" if api_settings.is_sqlite else "postgresql"


def test_login_refuses_a_bad_key(browser: Browser, api_url: str) -> None:
    tab = browser.new_page()
    tab.goto(f"{api_url}/ui/login")
    tab.fill("#key", "cairn_nope_nope")
    tab.click("button[type=submit]")
    expect(tab.locator(".notice.error")).to_contain_text("not valid")
    tab.goto(f"{api_url}/ui/runs/whatever")
    expect(tab).to_have_url(f"{api_url}/ui/login")
    tab.close()


def test_a_run_turns_green_live_and_its_step_shows_messages_costs_artifacts(
    page: Page, api_url: str, http: httpx.Client, api_settings: Any
) -> None:
    backend = backend_of(api_url, api_settings)
    run_id = start(
        http,
        spec=LIVE,
        inputs={"seconds": 2, "iterations": 3, "text": "hello dashboard"},
        idempotency_key="ui-find-me",
    )
    found = http.get("/v1/runs", params={"idempotency_key": "ui-find-me"}).json()
    assert [r["id"] for r in found["runs"]] == [run_id]
    page.goto(f"{api_url}/ui/runs")
    expect(page.locator(f"tr[data-run='{run_id}']")).to_be_visible()
    shot(page, "runs-list", backend)
    page.fill("#find", "no-such-key")
    page.press("#find", "Enter")
    expect(page.locator("#notice")).to_contain_text("no run has the id or idempotency key")
    page.fill("#find", "ui-find-me")  # a search by idempotency key opens its run
    page.press("#find", "Enter")
    expect(page).to_have_url(f"{api_url}/ui/runs/{run_id}")
    # Seen not yet done, then green without a reload.
    expect(page.locator("g.node[data-step=make]")).not_to_have_attribute("data-status", "succeeded")
    shot(page, "run-live", backend)
    expect(page.locator("g.node[data-step=make]")).to_have_attribute(
        "data-status", "succeeded", timeout=30_000
    )
    expect(page.locator("#run-status [data-status]")).to_have_attribute("data-status", "succeeded")
    found = http.get("/v1/runs", params={"idempotency_key": "ui-find-me"}).json()["runs"][0]
    assert (found["steps_succeeded"], found["steps_total"]) == (3, 3)

    page.click("g.node[data-step=work]")
    expect(page.locator("[data-inputs]")).to_contain_text('"nap"')  # its upstream's output
    expect(page.locator("[data-attempts]")).to_contain_text("complete_step")
    expect(page.locator("[data-attempt='work#1']")).to_be_visible()  # the timeline's bar
    expect(page.locator("[data-messages] .msg")).to_have_count(3)
    expect(page.locator("[data-messages]")).to_contain_text("iteration 0")
    expect(page.locator("[data-costs] tr")).to_have_count(4)  # a header and 3 costs
    expect(page.locator("[data-total]")).to_have_attribute("data-total", "0.03")
    shot(page, "run-step-panel", backend)

    with page.expect_download() as info:
        page.click("a[data-artifact='out.txt']")
    downloaded = Path(info.value.path()).read_bytes()
    listed = http.get(f"/v1/runs/{run_id}/artifacts").json()
    assert hashlib.sha256(downloaded).hexdigest() == listed[0]["sha256"]
    assert downloaded == b"hello dashboard"


def test_approving_a_waiting_step_finishes_the_run(
    page: Page, api_url: str, http: httpx.Client, api_settings: Any
) -> None:
    backend = backend_of(api_url, api_settings)
    run_id = start(http, spec=GATED)
    page.goto(f"{api_url}/ui/runs/{run_id}")
    request = page.locator("[data-approval]")
    expect(request).to_contain_text("Ship it?", timeout=30_000)
    expect(page.locator("g.node[data-step=ship]")).to_have_attribute("data-status", "waiting")
    shot(page, "run-approval", backend)
    page.once("dialog", lambda dialog: dialog.accept())
    request.get_by_role("button", name="Approve").click()
    expect(page.locator("#run-status [data-status]")).to_have_attribute(
        "data-status", "succeeded", timeout=30_000
    )
    decided = http.get("/v1/approvals", params={"run_id": run_id, "status": "approved"})
    assert decided.json()[0]["decided_by"].startswith("api-key:")


def test_cancel_from_the_run_page(
    page: Page, api_url: str, http: httpx.Client, api_settings: Any
) -> None:
    backend = backend_of(api_url, api_settings)
    run_id = start(http, spec=SLOW, inputs={"seconds": 30})
    page.goto(f"{api_url}/ui/runs/{run_id}")
    expect(page.locator("g.node[data-step=nap]")).to_have_attribute(
        "data-status", "running", timeout=30_000
    )
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel")
    expect(page.locator("#run-status [data-status]")).to_have_attribute(
        "data-status", "cancelled", timeout=30_000
    )
    shot(page, "run-cancelled", backend)
    page.goto(f"{api_url}/ui/overview")
    expect(page.locator("#statuses")).to_contain_text("cancelled")
    expect(page.locator("#runs-by-day tr[data-day]")).to_have_count(1)  # every run is today's
    shot(page, "overview", backend)


def test_a_thousand_step_fan_out_is_drawn_compactly(
    page: Page, api_url: str, http: httpx.Client, api_settings: Any
) -> None:
    backend = backend_of(api_url, api_settings)
    items = [{"key": f"item-{i:04d}", "task": "t.item"} for i in range(999)]
    join = {"key": "join", "task": "t.join", "after": [s["key"] for s in items]}
    run_id = start(http, spec={"name": "ui-wide", "steps": [*items, join]})
    page.goto(f"{api_url}/ui/runs/{run_id}")
    expect(page.locator("g.node")).to_have_count(1000, timeout=30_000)
    # The fan-out is a grid of small squares, not 999 labelled boxes.
    expect(page.locator("g.node text")).to_have_count(1)
    expect(page.locator("g.node[data-step=join]")).to_have_attribute(
        "data-status", "succeeded", timeout=120_000
    )
    shot(page, "run-wide", backend)


def test_the_runs_list_pages_through_a_hundred_thousand_runs(
    page: Page, api_url: str, http: httpx.Client, api_settings: Any
) -> None:
    backend = backend_of(api_url, api_settings)
    seed = start(http, spec={"name": "ui-many", "steps": [{"key": "a", "task": "t.item"}]})
    _copy_run(api_settings, seed, 100_000)
    page.goto(f"{api_url}/ui/runs")
    rows = page.locator("tr[data-run]")
    expect(rows).to_have_count(50)  # one server-side page, not 100,001 rows
    first = rows.first.get_attribute("data-run")
    page.click("#older")
    expect(rows.first).not_to_have_attribute("data-run", first or "")
    expect(rows).to_have_count(50)
    shot(page, "runs-100k", backend)
    page.goto(f"{api_url}/ui/overview")
    expect(page.locator("#runs-by-day")).to_contain_text("100001")


def _copy_run(settings: Any, run_id: str, copies: int) -> None:
    """``copies`` succeeded runs like ``run_id`` (same tenant and definition), in SQL."""
    engine = make_engine(settings)
    columns = (
        "tenant_id, project_id, definition_id, 'succeeded', inputs, 0, 0, created_at, created_at"
    )
    target = (
        "INSERT INTO workflow_runs (id, tenant_id, project_id, definition_id, status, inputs, "
        "steps_left, cost_usd, created_at, updated_at) "
    )
    if settings.is_sqlite:
        sql = (
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :copies) "
            + target
            + f"SELECT lower(hex(randomblob(16))), {columns} FROM workflow_runs, n WHERE id = :seed"
        )
        seed: Any = uuid.UUID(run_id).hex
    else:
        sql = (
            target
            + f"SELECT gen_random_uuid(), {columns} FROM workflow_runs, "
            + "generate_series(1, :copies) WHERE id = :seed"
        )
        seed = uuid.UUID(run_id)
    with engine.begin() as conn:
        conn.execute(text(sql), {"copies": copies, "seed": seed})
    engine.dispose()


def test_a_map_and_a_fork_and_a_parent_show_their_shape(
    page: Page, api_url: str, http: httpx.Client, api_settings: Any
) -> None:
    backend = backend_of(api_url, api_settings)
    spec = {
        "name": "ui-map",
        "steps": [
            {"key": "split", "task": "t.split"},
            {
                "key": "each",
                "after": ["split"],
                "map": {"over": "split.items", "task": "t.square", "max_parallel": 4},
            },
            {"key": "sum", "task": "t.collect", "after": ["each"]},
        ],
    }
    run_id = start(http, spec=spec, inputs={"n": 40})
    page.goto(f"{api_url}/ui/runs/{run_id}")
    expect(page.locator("g.node[data-step=sum]")).to_have_attribute(
        "data-status", "succeeded", timeout=60_000
    )
    expect(page.locator("g.node")).to_have_count(43)
    # The 40 elements are one grid between split and the map step: three labelled boxes.
    expect(page.locator("g.node text")).to_have_count(3)
    shot(page, "run-map", backend)
    fork = http.post(f"/v1/runs/{run_id}/fork", json={"from_step": "each"}).raise_for_status()
    fork_id = fork.json()["run_id"]
    page.goto(f"{api_url}/ui/runs/{fork_id}")
    expect(page.locator("#lineage")).to_contain_text(f"forked from {run_id}")
    expect(page.locator("g.node[data-step=sum]")).to_have_attribute(
        "data-status", "succeeded", timeout=60_000
    )
    expect(page.locator("[data-outputs]")).to_be_visible()
    shot(page, "run-fork", backend)
    page.click(f"#lineage a[href='/ui/runs/{run_id}']")
    expect(page).to_have_url(f"{api_url}/ui/runs/{run_id}")


def _set_hidden(page: Page, hidden: bool) -> None:
    """What the browser does as the tab goes to the background or comes back."""
    page.evaluate(
        """(hidden) => {
          Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
          Object.defineProperty(document, "visibilityState", { configurable: true,
            get: () => (hidden ? "hidden" : "visible") });
          document.dispatchEvent(new Event("visibilitychange"));
        }""",
        hidden,
    )


def test_a_page_in_a_background_tab_asks_the_api_nothing(page: Page) -> None:
    """The runs list refreshes every 2 s while it is shown; hidden, it stops asking, and
    shown again it refreshes at once, then every 2 s as before."""
    asked: list[float] = []
    page.on("request", lambda r: asked.append(time.monotonic()) if "/v1/runs" in r.url else None)
    page.wait_for_timeout(4500)
    assert len(asked) >= 2, asked  # refreshing while shown
    _set_hidden(page, True)
    page.wait_for_timeout(500)  # a refresh already under way may end
    hidden_at = len(asked)
    page.wait_for_timeout(5000)
    assert len(asked) == hidden_at, "a hidden page kept asking the API"
    shown = time.monotonic()
    _set_hidden(page, False)
    page.wait_for_timeout(4500)
    after = [t - shown for t in asked[hidden_at:]]
    assert after, "shown again, the page did not refresh"
    assert after[0] < 1.0, after  # at once, not at the next period
    assert len(after) >= 2, after  # and on every 2 s again
