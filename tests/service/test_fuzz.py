"""Schemathesis against a real server: generated requests to every operation never get a
server error, and every answer has a status, content type and body the OpenAPI document
lists. Seeded and small (``make fuzz`` runs the long version against ``rekko serve``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from rekko.service.runner import single_worker_server
from rekko.service.testing import settings_for

ADMIN = "admin-key-0123456789abcdef"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    port = _free_port()
    server = single_worker_server(
        settings_for(
            folder,
            port=port,
            read_key="read-key-0123456789abcdef",
            events_key="events-key-0123456789abcdef",
            admin_key=ADMIN,
            log_level="critical",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert thread.is_alive(), "the server stopped"
            threading.Event().wait(0.1)
        else:
            pytest.fail("the server did not become ready")
        yield schemathesis.openapi.from_url(f"{base}/openapi.json")
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def test_generated_requests_keep_the_contract(api_schema: Any) -> None:
    failures = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 25
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=8,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            case.call_and_validate(headers={"X-API-Key": ADMIN}, checks=CHECKS, timeout=30)

        try:
            check()
        except Exception as error:  # every operation runs; all failures are reported
            failures.append(f"{operation.label}: {str(error)[:2000]}")
    assert not failures, "\n\n".join(failures)
