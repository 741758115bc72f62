"""The dashboard pages that run the service: training jobs, model versions, online metrics
over time, the key page; through TestClient on the demo shop."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rekko.service import create_app
from rekko.service.dashboard.html import metric_label
from rekko.service.testing import settings_for, temporary_database, wait_for_job
from rekko.store import repository as repo

READ = "read-key-0123456789abcdef"
EVENTS = "events-key-0123456789abcdef"
ADMIN = "admin-key-0123456789abcdef"
FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = settings_for(
        tmp_path_factory.mktemp("operations"),
        model="item-knn",
        read_key=READ,
        events_key=EVENTS,
        admin_key=ADMIN,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _with_key(client: TestClient, key: str) -> None:
    client.cookies.clear()
    assert client.get("/dashboard", params={"key": key}).status_code == 200


def _table(html: str, css_id: str) -> str:
    start = html.index(f'id="{css_id}"')
    return html[start : html.index("</table>", start)]


def test_no_key_answers_a_page_that_asks_for_it(client: TestClient) -> None:
    client.cookies.clear()
    for url in ("/dashboard", "/dashboard/jobs", "/dashboard/versions", "/dashboard/online"):
        response = client.get(url)
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("text/html")
        assert 'id="key-needed"' in response.text and 'action="/dashboard/key"' in response.text
        assert "REKKO_READ_KEY" in response.text
    wrong = client.post("/dashboard/key", content="key=nope&next=/dashboard/jobs", headers=FORM)
    assert wrong.status_code == 401 and "unknown API key" in wrong.text
    taken = client.post(
        "/dashboard/key",
        content=f"key={READ}&next=/dashboard/jobs",
        headers=FORM,
        follow_redirects=False,
    )
    assert taken.status_code == 303 and taken.headers["location"] == "/dashboard/jobs"
    assert client.get("/dashboard/jobs").status_code == 200  # the cookie opens the pages
    elsewhere = client.post(
        "/dashboard/key",
        content=f"key={READ}&next=https://example.org/",
        headers=FORM,
        follow_redirects=False,
    )
    assert elsewhere.headers["location"] == "/dashboard"
    client.cookies.clear()


def test_buttons_need_the_admin_key_and_the_dashboard_origin(client: TestClient) -> None:
    _with_key(client, READ)
    page = client.get("/dashboard/jobs").text
    assert 'id="train-now"' in page and 'id="admin-note"' in page
    refused = client.post("/dashboard/jobs/train", content="algorithm=popularity", headers=FORM)
    assert refused.status_code == 403 and "admin" in refused.text
    jobs = repo.list_jobs(client.app.state.service.engine)  # type: ignore[attr-defined]
    assert not [job for job in jobs if job["trigger"] == "api"]  # nothing was started
    _with_key(client, ADMIN)
    assert 'id="admin-note"' not in client.get("/dashboard/jobs").text
    foreign = client.post(
        "/dashboard/jobs/train",
        content="algorithm=popularity",
        headers={**FORM, "origin": "https://elsewhere.example"},
    )
    assert foreign.status_code == 403
    for form, reason in (
        ("algorithm=nope", "unknown model 'nope'"),
        ("algorithm=popularity&activate=sometimes", "activate is auto or never"),
    ):
        bad = client.post("/dashboard/jobs/train", content=form, headers=FORM)
        assert bad.status_code == 422 and 'id="notice"' in bad.text and text_of(reason) in bad.text
    client.cookies.clear()


def test_train_now_runs_a_job_shown_with_its_reason_and_metrics(client: TestClient) -> None:
    _with_key(client, ADMIN)
    started = client.post(
        "/dashboard/jobs/train",
        content="algorithm=popularity&activate=never",
        headers=FORM,
        follow_redirects=False,
    )
    assert started.status_code == 303, started.text
    job_id = re.search(r"id=([0-9a-f]+)", started.headers["location"]).group(1)  # type: ignore[union-attr]
    shown = client.get(started.headers["location"]).text
    assert f"Training job {job_id} started." in shown
    job = wait_for_job(client, job_id, 60.0, **{"X-API-Key": ADMIN})
    assert job["status"] == "succeeded" and job["activated"] is False
    finished = _table(client.get("/dashboard/jobs").text, "jobs-finished")
    row = finished[finished.index(job_id) :]
    row = row[: row.index("</tr>")]
    assert "succeeded" in row and "popularity" in row and job["version"] in row
    assert text_of(job["reason"]) in row  # the gate's reason, as the API gives it
    ndcg = job["metrics"]["ndcg@10"]
    assert f"<dt>NDCG@10</dt><dd>{ndcg:,.4f}</dd>" in row
    client.cookies.clear()


def text_of(value: str) -> str:
    from html import escape

    return escape(value, quote=True)


def test_versions_page_activates_and_rolls_back(client: TestClient) -> None:
    state = client.app.state.service  # type: ignore[attr-defined]
    _with_key(client, ADMIN)
    first = state.registry.active
    started = client.post(
        "/training/jobs",
        json={"algorithm": "popularity", "params": {"weighted": True}, "activate": "never"},
        headers={"X-API-Key": ADMIN},
    )
    assert started.status_code == 202, started.text
    other = wait_for_job(client, started.json()["job_id"], 60.0, **{"X-API-Key": ADMIN})["version"]
    page = client.get("/dashboard/versions").text
    table = _table(page, "versions")
    active_row = table[table.index(f"<code>{first}</code>") :]
    assert '"status active">active<' in active_row[: active_row.index("</tr>")]
    assert f'data-activate="{other}"' in table and f'data-activate="{first}"' not in table

    done = client.post(f"/dashboard/versions/{other}/activate", headers=FORM)
    assert done.status_code == 200 and f"Version {other} is active now." in done.text
    assert state.registry.active == other
    assert client.get("/health").json()["model_version"] == other
    assert f'id="active-version">{other}<' in done.text

    back = client.post("/dashboard/versions/rollback", headers=FORM)
    assert back.status_code == 200 and f"Rolled back: version {first} is active now." in back.text
    assert state.registry.active == first

    unknown = client.post("/dashboard/versions/v9999-nope/activate", headers=FORM)
    assert unknown.status_code == 404 and "unknown model version" in unknown.text
    client.cookies.clear()


def test_overview_names_the_active_version_active(client: TestClient) -> None:
    page = client.get("/dashboard", headers={"X-API-Key": READ}).text
    active = client.app.state.service.registry.active  # type: ignore[attr-defined]
    offline = _table(page, "offline-metrics")
    row = offline[offline.index(active) :]
    cells = re.findall(r"<td>([^<]*)</td>", row[: row.index("</tr>")])
    assert cells[1] == "active", cells
    assert "fit_s" not in offline and "Fit time (s)" in offline and "Recall@10" in offline


def test_health_and_ready_name_the_same_version(client: TestClient) -> None:
    health, ready = client.get("/health").json(), client.get("/ready").json()
    assert health["model_version"] is not None
    assert health["model_version"] == ready["model_version"]


def test_try_it_says_what_is_wrong_with_a_price(client: TestClient) -> None:
    headers = {"X-API-Key": READ}
    bad = client.get("/dashboard/try/results", params={"max_price": "cheap"}, headers=headers)
    assert (
        'id="try-error"' in bad.text
        and "Max price must be a number, got &#x27;cheap&#x27;" in bad.text
    )
    assert "try-results" not in bad.text
    crossed = client.get(
        "/dashboard/try/results", params={"min_price": "50", "max_price": "10"}, headers=headers
    )
    assert "Min price (50) is above Max price (10)" in crossed.text
    good = client.get("/dashboard/try/results", params={"max_price": "20,5"}, headers=headers)
    assert "try-results" in good.text


def test_popularity_fallback_scores_are_labelled(client: TestClient) -> None:
    page = client.get("/dashboard/users/somebody-new", headers={"X-API-Key": READ}).text
    assert "fallback: popularity" in page
    table = _table(page, "recommendations")
    assert "<th>users who took it</th>" in table and "<th>score</th>" not in table
    counts = re.findall(r"<td>(\d+)</td></tr>", table)
    assert len(counts) == 10  # whole numbers: how many users took each item


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("fit_s", "Fit time (s)"),
        ("recommend_s", "Recommend time (s)"),
        ("ndcg@10", "NDCG@10"),
        ("recall@20", "Recall@20"),
        ("map@10", "MAP@10"),
        ("catalog_coverage", "Catalog coverage"),
    ],
)
def test_metric_labels(name: str, label: str) -> None:
    assert metric_label(name) == label


def _serve_and_follow(client: TestClient) -> tuple[str, float]:
    """Serve one list of 4 and follow its first item; returns the version and the time of
    serving (the response's own time stamp is not given, so: just before the request)."""
    before = time.time()
    served = client.get(
        "/users/u0003/recommendations", params={"k": 4}, headers={"X-API-Key": READ}
    ).json()
    first = served["items"][0]["item_id"]
    stored = client.post(
        "/events",
        json={"events": [{"user_id": "u0003", "item_id": first, "event_id": "follow-1"}]},
        headers={"X-API-Key": EVENTS},
    )
    assert stored.json()["stored"] == 1
    return str(served["model_version"]), before


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.db),
        pytest.param("mariadb", marks=pytest.mark.db),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Hours are counted in SQL, which each database does its own way."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'rekko.db'}"
    else:
        with temporary_database(request.param) as url:
            yield url


def test_online_metrics_per_hour_as_charts(database_url: str, tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path, database_url=database_url, read_key=READ, events_key=EVENTS, admin_key=ADMIN
    )
    with TestClient(create_app(settings)) as client:
        empty = client.get("/dashboard/online", headers={"X-API-Key": READ}).text
        assert 'id="no-traffic"' in empty
        version, when = _serve_and_follow(client)
        page = client.get("/dashboard/online", headers={"X-API-Key": READ}).text
        for chart in ("chart-requests", "chart-impressions", "chart-follow-rate"):
            assert f'<svg id="{chart}"' in page
        rows = _table(page, "online-hourly")
        cells = re.findall(r"<td>([^<]*)</td>", rows[rows.index("<tbody>") :])
        hour = cells[0]  # the hour it was served in: when, or the next if it just turned
        hours = {time.strftime("%m-%d %H:00", time.gmtime(when + step)) for step in (0, 5)}
        assert hour in hours, (hour, hours)
        assert cells[:6] == [hour, version, "1", "4", "1", "25.00%"], cells
        assert f"{version} · {hour}: 25.0%</title>" in page  # 1 of 4 shown items followed
        assert "http://" not in page.replace("http://www.w3.org", "")


def test_try_it_says_when_the_text_matched_nothing_within_the_style(client: TestClient) -> None:
    # No demo item is both "vintage" and a lantern: the style holds, and the page says why
    # the text did not narrow the list.
    page = client.get(
        "/dashboard/try/results",
        params={"q": "lantern", "style": "vintage"},
        headers={"X-API-Key": READ},
    ).text
    assert "fallback: preferences" in page
    assert '<span id="try-note">no item matches a word of the query</span>' in page


def test_events_chart_counts_by_event_time(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, read_key=READ, events_key=EVENTS)
    with TestClient(create_app(settings)) as client:
        headers = {"X-API-Key": READ}
        page = client.get("/dashboard", headers=headers).text
        imported = repo.training_data(client.app.state.service.engine).events  # type: ignore[attr-defined]
        # The demo's events happened long ago: none in the last hour, all said apart.
        assert "By event time: 0 events in the current minute, 0 in the last hour." in page
        assert f"{len(imported):,} more received in the last hour happened earlier" in page
        stored = client.post(
            "/events",
            json={"events": [{"user_id": "u0001", "item_id": "i0002", "time": time.time()}]},
            headers={"X-API-Key": EVENTS},
        )
        assert stored.json()["stored"] == 1
        page = client.get("/dashboard", headers=headers).text
        minute = r"(1 event|0 events)"  # 0 when the minute turned since the post
        assert re.search(
            rf"By event time: {minute} in the current minute, 1 in the last hour", page
        )
