"""The dashboard pages through TestClient: each page renders, and the read key guards it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rekko.service import create_app
from rekko.service.testing import settings_for

READ = "read-key-0123456789abcdef"
EVENTS = "events-key-0123456789abcdef"
ADMIN = "admin-key-0123456789abcdef"

PAGES = {
    "/dashboard": "Offline metrics by version",
    "/dashboard/users/u0001": "Recommendations",
    "/dashboard/users?q=u00": "u0010",
    "/dashboard/items/i0001": "Similar items",
    "/dashboard/try?q=lantern&max_price=40": "try-results",
    "/dashboard/try/results?category=outdoor": "try-results",
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = settings_for(
        tmp_path_factory.mktemp("dashboard"),
        model="item-knn",
        read_key=READ,
        events_key=EVENTS,
        admin_key=ADMIN,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.mark.parametrize(("url", "expected"), sorted(PAGES.items()))
def test_page_renders_with_the_read_key(client: TestClient, url: str, expected: str) -> None:
    response = client.get(url, headers={"X-API-Key": READ})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert expected in response.text


@pytest.mark.parametrize("url", sorted(PAGES))
def test_page_needs_a_key(client: TestClient, url: str) -> None:
    client.cookies.clear()
    assert client.get(url).status_code == 401
    assert client.get(url, headers={"X-API-Key": "wrong-key-0123456789abcdef"}).status_code == 401
    assert client.get(url, headers={"X-API-Key": EVENTS}).status_code == 403
    assert client.get(url, headers={"X-API-Key": ADMIN}).status_code == 200


def test_key_in_the_address_is_kept_in_a_cookie(client: TestClient) -> None:
    client.cookies.clear()
    first = client.get("/dashboard", params={"key": READ})
    assert first.status_code == 200 and "rekko_dashboard_key" in first.headers["set-cookie"]
    assert client.get("/dashboard/items/i0002").status_code == 200
    client.cookies.clear()


def test_overview_shows_counts_and_the_active_version(client: TestClient) -> None:
    text = client.get("/dashboard", headers={"X-API-Key": READ}).text
    assert 'data-stat="users">120<' in text and 'data-stat="items">80<' in text
    active = client.app.state.service.registry.active  # type: ignore[attr-defined]
    assert active and f'id="active-version">{active}<' in text


def test_overview_pages_through_the_catalogue(client: TestClient) -> None:
    first = client.get("/dashboard", headers={"X-API-Key": READ}).text
    second = client.get("/dashboard?offset=25", headers={"X-API-Key": READ}).text
    assert "i0000" in first and "i0025" not in first
    assert "i0025" in second and "next" in second and "previous" in second


def test_user_page_gives_reasons_and_history(client: TestClient) -> None:
    text = client.get("/dashboard/users/u0001", headers={"X-API-Key": READ}).text
    assert 'id="history"' in text and 'id="recommendations"' in text
    assert "because you liked" in text


def test_exact_user_search_redirects(client: TestClient) -> None:
    response = client.get(
        "/dashboard/users?q=u0001", headers={"X-API-Key": READ}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/users/u0001"


def test_unknown_item_is_404(client: TestClient) -> None:
    response = client.get("/dashboard/items/nope", headers={"X-API-Key": READ})
    assert response.status_code == 404 and "Unknown item" in response.text


def test_try_it_obeys_the_price_range(client: TestClient) -> None:
    response = client.get(
        "/dashboard/try/results", params={"max_price": "15"}, headers={"X-API-Key": READ}
    )
    prices = [float(cell) for cell in _price_cells(response.text)]
    assert prices and max(prices) <= 15


def test_static_files_ship_with_the_package(client: TestClient) -> None:
    assert "body" in client.get("/dashboard/static/dashboard.css").text
    assert "fetch(" in client.get("/dashboard/static/dashboard.js").text
    text = client.get("/dashboard/try", headers={"X-API-Key": READ}).text
    assert "http://" not in text and "https://" not in text


def _price_cells(html: str) -> list[str]:
    return re.findall(r"<td>(\d+\.\d\d)</td></tr>", html)


def test_open_without_keys(tmp_path: Path) -> None:
    with TestClient(create_app(settings_for(tmp_path))) as open_client:
        assert open_client.get("/dashboard").status_code == 200


def test_overview_shows_online_metrics_of_served_and_followed_lists(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, read_key=READ, events_key=EVENTS, admin_key=ADMIN)
    with TestClient(create_app(settings)) as client:
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
        page = client.get("/dashboard", headers={"X-API-Key": READ}).text
        table = page[page.index('id="online-metrics"') :]
        table = table[: table.index("</table>")]
        row = re.search(rf"{re.escape(served['model_version'])}</td>(.*?)</tr>", table, re.S)
        assert row is not None, table
        cells = re.findall(r"<td[^>]*>([^<]*)</td>", row.group(1))
        assert cells[:3] == ["1", "4", "1"], cells  # one request, 4 items shown, 1 followed
        events = page[page.index('data-stat="events">') :]
        assert events.startswith('data-stat="events">') and "events per minute" in page.lower()


def test_try_it_reads_the_catalogues_own_features(datasets_dir: Path) -> None:
    from types import SimpleNamespace

    from rekko.data.loaders import load_fiverr
    from rekko.models import create_model
    from rekko.service.dashboard.pages import _form_features, _try_spec

    gigs = create_model("popularity").fit(load_fiverr(datasets_dir / "fiverr"))
    fields = _form_features(SimpleNamespace(model=gigs))  # type: ignore[arg-type]
    assert fields == {
        "category": "gig_design_type",
        "style": "gig_design_style",
        "price": "gig_price_from",
        "near": None,
    }
    form = {"style": "anime", "max_price": "30", "lat": "1", "lon": "2", "km": "5"}
    assert _try_spec(form, fields) == (
        "",
        {"gig_design_style": "anime"},
        {"gig_price_from": {"min": None, "max": 30.0}},  # no coordinates: "near" is left out
    )


@pytest.mark.slow
def test_pages_stay_small_on_a_catalogue_of_100000_items(tmp_path: Path) -> None:
    """Server-side paging: no page carries the catalogue, whatever its size."""
    from rekko.store import repository as repo

    settings = settings_for(tmp_path, read_key=READ)
    with TestClient(create_app(settings)) as client:
        state = client.app.state.service  # type: ignore[attr-defined]
        records = [
            (f"x{n:06d}", {"title": f"extra item {n}", "price": float(n % 90)}, None)
            for n in range(100_000)
        ]
        repo.upsert_items(state.engine, records)
        state.catalogue.refresh(state.engine)
        headers = {"X-API-Key": READ}
        overview = client.get("/dashboard", headers=headers)
        assert 'data-stat="items">100,080<' in overview.text
        last = client.get("/dashboard?offset=100070", headers=headers)  # the last 10 items
        assert "x099999" in last.text and "x099989" not in last.text and "next" not in last.text
        for response in (
            overview,
            last,
            client.get("/dashboard/items/x050000", headers=headers),
            client.get("/dashboard/try?q=extra&max_price=10", headers=headers),
            client.get("/dashboard/users/u0001", headers=headers),
        ):
            assert response.status_code == 200
            assert len(response.content) < 100_000, (response.url, len(response.content))


def test_the_overview_shows_what_was_imported(tmp_path: Path) -> None:
    import pandas as pd

    from rekko.config import DataSpec

    path = tmp_path / "events.csv"
    pd.DataFrame(
        {
            "user_id": [f"v{n % 7}" for n in range(60)],
            "item_id": [f"p{n % 11}" for n in range(60)],
        }
    ).to_csv(path, index=False)
    settings = settings_for(
        tmp_path / "svc", data=DataSpec(interactions=str(path)), model="popularity"
    )
    with TestClient(create_app(settings)) as client:
        page = client.get("/dashboard").text
    section = page[page.index('id="imports"') :]
    section = section[: section.index("</table>")]
    assert str(path.resolve()) in section
    assert re.search(r"<td[^>]*>60</td>", section)  # rows read and events stored


def test_the_overview_says_when_nothing_was_imported(client: TestClient) -> None:
    page = client.get("/dashboard", headers={"X-API-Key": READ}).text
    assert "Nothing imported" in page
