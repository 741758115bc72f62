"""The dashboard in a real browser (Debian's headless Chromium through Playwright).

A person's path: open the overview, search a user, open one of their recommendations, use
"Try it", post feedback events and see the user's page change; an operator's path: give the
admin key, train a version, activate it and roll back, read the online metrics' charts.
Screenshots go to pytest's temporary folder; to refresh the ones in the documentation run::

    REKKO_DOCS_SCREENSHOTS=1 pytest tests/dashboard/test_dashboard_browser.py

which also writes ``docs/images/dashboard.png`` (overview), ``dashboard-user.png``,
``dashboard-item.png``, ``dashboard-try.png``, ``dashboard-jobs.png``,
``dashboard-versions.png`` and ``dashboard-online.png``.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright

from rekko.service import create_app
from rekko.service.settings import ServeSettings
from rekko.service.testing import settings_for
from rekko.store import repository as repo
from rekko.store.db import create_db_engine

CHROMIUM = os.environ.get("REKKO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
READ = "read-key-0123456789abcdef"
EVENTS = "events-key-0123456789abcdef"
ADMIN = "admin-key-0123456789abcdef"
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


@pytest.fixture(autouse=True, scope="module")
def _chromium() -> None:
    """The browser tests are part of the suite: a missing Chromium is a failure, not a skip."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)", pytrace=False
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server_settings(tmp_path_factory: pytest.TempPathFactory) -> ServeSettings:
    return settings_for(
        tmp_path_factory.mktemp("browser"),
        model="item-knn",
        read_key=READ,
        events_key=EVENTS,
        admin_key=ADMIN,
    )


@pytest.fixture(scope="module")
def server(server_settings: ServeSettings) -> Iterator[str]:
    """``rekko serve``'s app under uvicorn on a free port, on a fresh demo database."""
    settings = server_settings
    port = _free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the rekko server did not become ready in 60 s")
        time.sleep(0.1)
    yield base
    uvicorn_server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as driver:
        launched = driver.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def console_errors() -> list[str]:
    """Errors the page's browser console showed (a test may take out the ones it caused)."""
    return []


@pytest.fixture(params=[(1280, 900), (390, 844)], ids=["laptop", "phone"])
def page(
    request: pytest.FixtureRequest, browser: Browser, server: str, console_errors: list[str]
) -> Iterator[Page]:
    width, height = request.param
    context = browser.new_context(viewport={"width": width, "height": height})
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    tab.on("pageerror", lambda error: console_errors.append(str(error)))
    tab.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    yield tab
    context.close()
    assert not console_errors, f"errors in the browser console: {console_errors}"


def _shot(page: Page, folder: Path, name: str, *, docs: str | None = None) -> None:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000
    if docs and os.environ.get("REKKO_DOCS_SCREENSHOTS"):
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMAGES / docs)


def test_a_person_uses_the_dashboard(page: Page, server: str, tmp_path: Path) -> None:
    tab = page
    laptop = tab.viewport_size is not None and tab.viewport_size["width"] > 600

    # The overview: statistics, the active model, metrics tables.
    tab.goto(f"{server}/dashboard?key={READ}")
    expect(tab.locator("h1")).to_have_text("Overview")
    expect(tab.locator('[data-stat="users"]')).to_have_text("120")
    expect(tab.locator('[data-stat="items"]')).to_have_text("80")
    expect(tab.locator("#active-version")).to_contain_text("item-knn")
    expect(tab.locator("#offline-metrics tbody tr").first).to_contain_text("item-knn")
    expect(tab.locator("#items tbody tr")).to_have_count(25)
    _shot(tab, tmp_path, "overview", docs="dashboard.png" if laptop else None)

    # Search a user: the page shows their history next to reasoned recommendations.
    tab.get_by_label("User id").fill("u0001")
    tab.get_by_role("button", name="Search").click()
    expect(tab.locator("h1")).to_have_text("User u0001")
    expect(tab.locator("#history tbody tr").first).to_be_visible()
    recommendations = tab.locator("#recommendations tbody tr")
    expect(recommendations).to_have_count(10)
    expect(tab.locator("#recommendations .reason").first).to_contain_text("because you liked")
    _shot(tab, tmp_path, "user", docs="dashboard-user.png" if laptop else None)

    # Open the first recommendation: its features and similar items.
    first_item = recommendations.first.locator("a").inner_text()
    recommendations.first.locator("a").click()
    expect(tab.locator("h1")).to_have_text(f"Item {first_item}")
    expect(tab.locator("#features")).to_contain_text("title")
    expect(tab.locator("#similar tbody tr").first).to_be_visible()
    _shot(tab, tmp_path, "item", docs="dashboard-item.png" if laptop else None)

    # "Try it": submit free text and a price range; the live results follow the form.
    tab.get_by_role("link", name="Try it").click()
    tab.get_by_label("Free text").fill("lantern")
    tab.get_by_label("Max price").fill("60")
    tab.get_by_role("button", name="Show").click()
    results = tab.locator("#try-results tbody tr")
    expect(results.first).to_contain_text("lantern")
    tab.get_by_label("Max price").fill("1")
    expect(tab.locator("#no-results")).to_be_visible()
    tab.get_by_label("Max price").fill("")
    tab.get_by_label("Category").fill("outdoor")
    expect(results.first).to_be_visible()
    _shot(tab, tmp_path, "try", docs="dashboard-try.png" if laptop else None)


def test_feedback_changes_the_user_page(browser: Browser, server: str, tmp_path: Path) -> None:
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    newcomer = f"visitor-{time.time_ns()}"
    tab.goto(f"{server}/dashboard/users/{newcomer}?key={READ}")
    expect(tab.locator("#recommendations")).to_be_visible()
    expect(tab.locator("main")).to_contain_text("fallback: popularity")
    before = tab.locator("#recommendations tbody a").all_inner_texts()

    liked = ["i0003", "i0007"]
    now = time.time() - 60
    response = httpx.post(
        f"{server}/events",
        json={
            "events": [
                {"user_id": newcomer, "item_id": item, "type": "purchase", "time": now + step}
                for step, item in enumerate(liked)
            ]
        },
        headers={"X-API-Key": EVENTS},
    )
    assert response.status_code == 200, response.text
    tab.reload()
    expect(tab.locator("#history tbody a")).to_have_text(sorted(liked, reverse=True), timeout=5_000)
    expect(tab.locator("main")).not_to_contain_text("fallback: popularity")
    after = tab.locator("#recommendations tbody a").all_inner_texts()
    assert after and after != before
    assert not set(after) & set(liked)
    tab.screenshot(path=str(tmp_path / "after-feedback.png"), full_page=True)
    context.close()


@pytest.fixture(scope="module")
def past_traffic(server: str, server_settings: ServeSettings) -> str:
    """Twelve hours of lists served by the active version before the test, with follow-up
    events, stored as the service stores them (so the charts have a history to draw)."""
    version = httpx.get(f"{server}/ready").json()["model_version"]
    engine = create_db_engine(server_settings.database_url)
    now = time.time()
    shown: list[repo.Impression] = []
    followed: list[repo.NewEvent] = []
    for hours_ago in range(12, 0, -1):
        served_at = now - hours_ago * 3600
        for request in range(2 + hours_ago % 4):
            user = f"u{(hours_ago * 7 + request) % 120:04d}"
            request_id = f"past-{hours_ago}-{request}"
            for rank in range(5):
                item = f"i{(hours_ago * 5 + request * 3 + rank) % 80:04d}"
                shown.append(repo.Impression(request_id, user, item, rank, version, served_at))
                if (rank + request + hours_ago) % 4 == 0:
                    followed.append(repo.NewEvent(user, item, "view", 1.0, served_at + 30))
    repo.add_impressions(engine, shown)
    repo.add_events(engine, followed)
    engine.dispose()
    return str(version)


def test_an_operator_runs_the_service(
    page: Page, server: str, past_traffic: str, tmp_path: Path, console_errors: list[str]
) -> None:
    tab = page
    laptop = tab.viewport_size is not None and tab.viewport_size["width"] > 600

    # Without a key the dashboard says which key it needs and takes it.
    tab.goto(f"{server}/dashboard/jobs")
    expect(tab.locator("#key-needed")).to_contain_text("API key")
    unauthorized = "the server responded with a status of 401 (Unauthorized)"
    assert len(console_errors) == 1 and unauthorized in console_errors[0], console_errors
    console_errors.clear()  # the 401 of the key page itself, as it should be
    tab.get_by_label("API key").fill(ADMIN)
    tab.get_by_role("button", name="Open").click()
    expect(tab.locator("h1")).to_have_text("Training jobs")
    expect(tab.locator("#admin-note")).to_have_count(0)

    # Train now: the job is listed, then finishes with its reason and holdout metrics.
    tab.get_by_label("Algorithm").select_option("popularity")
    tab.get_by_label("Activate").select_option("never")
    tab.get_by_role("button", name="Train now").click()
    notice = tab.locator("#notice")
    expect(notice).to_contain_text("started")
    job_id = notice.inner_text().split()[2]
    finished = tab.locator("#jobs-finished tr", has_text=job_id)
    expect(finished).to_contain_text("succeeded", timeout=60_000)
    expect(finished).to_contain_text("NDCG@10")
    _shot(tab, tmp_path, "jobs", docs="dashboard-jobs.png" if laptop else None)

    # Versions: activate the new one, serve a few lists with it, roll back.
    tab.get_by_role("link", name="Model versions").click()
    expect(tab.locator("#active-version")).to_have_text(past_traffic)
    active_row = tab.locator("#versions tr").filter(has=tab.locator("code", has_text=past_traffic))
    expect(active_row.locator(".status")).to_have_text("active")
    newest = tab.locator("#versions tbody tr").first
    new_version = newest.locator("code").inner_text()
    assert "popularity" in new_version
    newest.get_by_role("button", name="Activate").click()
    expect(tab.locator("#notice")).to_have_text(f"Version {new_version} is active now.")
    expect(tab.locator("#active-version")).to_have_text(new_version)
    for user in ("u0001", "u0002", "u0003"):
        served = httpx.get(
            f"{server}/users/{user}/recommendations",
            params={"k": 5},
            headers={"X-API-Key": READ},
        ).json()
        assert served["model_version"] == new_version
    _shot(tab, tmp_path, "versions", docs="dashboard-versions.png" if laptop else None)
    tab.get_by_role("button", name="Roll back").click()
    expect(tab.locator("#notice")).to_have_text(
        f"Rolled back: version {past_traffic} is active now."
    )

    # Online metrics over time: three charts with a line per version.
    tab.get_by_role("link", name="Online metrics").click()
    for chart in ("#chart-requests", "#chart-impressions", "#chart-follow-rate"):
        expect(tab.locator(chart)).to_be_visible()
    expect(tab.locator("#chart-requests polyline").first).to_be_visible()
    legend = tab.locator(".legend").first
    expect(legend).to_contain_text(past_traffic)
    expect(legend).to_contain_text(new_version)
    if laptop:  # no column hidden behind a scroll bar
        assert tab.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    _shot(tab, tmp_path, "online", docs="dashboard-online.png" if laptop else None)
