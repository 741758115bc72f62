"""``/docs`` works offline: Swagger UI comes from installed files, not from a CDN."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Route, expect, sync_playwright

from rekko.service import create_app
from rekko.service.testing import settings_for


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = settings_for(tmp_path_factory.mktemp("docs"))
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _urls(page: str) -> list[str]:
    return re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page)


def test_docs_reference_only_local_urls_and_they_answer(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "http://" not in page.text and "https://" not in page.text
    urls = _urls(page.text)
    assert any(url.endswith("swagger-ui-bundle.js") for url in urls)
    assert any(url.endswith("swagger-ui.css") for url in urls)
    assert any(url == "/openapi.json" for url in urls)
    for url in urls:
        assert url.startswith("/"), f"/docs loads {url} from another host"
        assert "//" not in url, url
        response = client.get(url)
        assert response.status_code == 200, url
    script = client.get(next(url for url in urls if url.endswith("swagger-ui-bundle.js")))
    assert "SwaggerUIBundle" in script.text
    assert len(script.content) > 500_000  # the whole bundle, not a stub


def test_the_bundled_swagger_ui_reads_openapi_3_1(client: TestClient) -> None:
    """FastAPI writes OpenAPI 3.1, which Swagger UI renders from version 5 on."""
    version = client.get("/openapi.json").json()["openapi"]
    assert version.startswith("3.1")
    urls = _urls(client.get("/docs").text)
    bundle = client.get(next(url for url in urls if url.endswith("swagger-ui-bundle.js"))).text
    major = {int(found) for found in re.findall(r'"(\d+)\.\d+\.\d+"', bundle[:2_000_000])}
    assert 5 in major


def test_the_oauth2_redirect_page_is_served(client: TestClient) -> None:
    assert client.get("/docs/oauth2-redirect").status_code == 200


def test_docs_off_serves_neither_page_nor_assets(tmp_path: Path) -> None:
    settings = settings_for(tmp_path).model_copy(update={"docs": False})
    with TestClient(create_app(settings)) as test_client:
        assert test_client.get("/docs").status_code == 404
        assert test_client.get("/docs/assets/swagger-ui.css").status_code == 404


def test_swagger_ui_renders_the_api_with_no_network(client: TestClient) -> None:
    """Headless Chromium opens /docs where every request is answered by the app itself and
    any other host is refused: the operations must still show."""
    chromium = os.environ.get("REKKO_CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists():
        pytest.fail(f"no Chromium at {chromium}: apt-get install chromium", pytrace=False)
    elsewhere: list[str] = []

    def answer(route: Route) -> None:
        url = urlsplit(route.request.url)
        if url.netloc != "rekko.test":
            elsewhere.append(route.request.url)
            route.abort()
            return
        response = client.get(url.path + (f"?{url.query}" if url.query else ""))
        route.fulfill(
            status=response.status_code,
            headers={"content-type": response.headers.get("content-type", "text/plain")},
            body=response.content,
        )

    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page()
        page.route("**/*", answer)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto("http://rekko.test/docs")
        operation = page.locator(
            ".opblock-summary-path", has_text="/users/{user_id}/recommendations"
        )
        expect(operation.first).to_be_visible(timeout=15_000)
        browser.close()
    assert not elsewhere, f"/docs tried to load {elsewhere}"
    assert not errors, errors
