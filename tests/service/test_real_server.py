"""A real ``rekko serve`` process under faults and load: killed with SIGKILL while events
stream in, and flooded with more concurrent requests than it takes on."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from rekko.service.testing import temporary_database
from rekko.store.db import create_db_engine
from rekko.store.schema import events

SERVE = "from rekko.service import load_settings, serve; serve(load_settings())"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """``rekko serve`` in a child process on a free loopback port."""

    def __init__(self, folder: Path, database_url: str, **settings: str) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        self.environ = {
            **os.environ,
            "REKKO_PORT": str(self.port),
            "REKKO_DATABASE_URL": database_url,
            "REKKO_MODEL_DIR": str(folder / "models"),
            "REKKO_DEMO_USERS": "120",
            "REKKO_DEMO_ITEMS": "80",
            "REKKO_TRAINING_EXECUTOR": "thread",
            "REKKO_LOG_LEVEL": "warning",
            **{f"REKKO_{name.upper()}": value for name, value in settings.items()},
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVE], env=self.environ, stdout=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.base}/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, "the server stopped"
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def running(folder: Path, database_url: str, **settings: str) -> Iterator[Server]:
    server = Server(folder, database_url, **settings)
    try:
        server.start()
        yield server
    finally:
        server.stop()


# -- SIGKILL while events stream in -----------------------------------------------------------
SENDERS = 4
KILLS = 2


def _stream_events(base: str, sender: int, acknowledged: list[str], stop: threading.Event) -> None:
    """Post one event per call with a unique event_id until ``stop``; keep the ids the
    server acknowledged (answered 200 with stored 1)."""
    number = 0
    with httpx.Client(base_url=base, timeout=5) as client:
        while not stop.is_set():
            event_id = f"s{sender}-{number}"
            event = {"user_id": f"u{sender:04d}", "item_id": f"i{number % 80 + 1:04d}"}
            try:
                response = client.post(
                    "/events", json={"events": [{**event, "event_id": event_id}]}
                )
            except httpx.TransportError:  # the server is gone: this one is not acknowledged
                time.sleep(0.05)
                continue
            if response.status_code == 200:
                answer = response.json()  # a retry of one stored before the kill: a duplicate
                assert answer["stored"] + answer["duplicates"] == 1, response.text
                acknowledged.append(event_id)
                number += 1


def _kill_mid_stream(folder: Path, database_url: str) -> None:
    server = Server(folder, database_url, sqlite_synchronous="FULL")
    acknowledged: list[str] = []
    try:
        for _ in range(KILLS):
            server.start()
            stop = threading.Event()
            senders = [
                threading.Thread(target=_stream_events, args=(server.base, n, acknowledged, stop))
                for n in range(SENDERS)
            ]
            for thread in senders:
                thread.start()
            time.sleep(1.0)
            server.kill()  # mid-stream: requests are in flight
            stop.set()
            for thread in senders:
                thread.join(timeout=20)
        server.start()
        assert len(acknowledged) >= SENDERS * KILLS, "too few events got through to prove much"
        with httpx.Client(base_url=server.base, timeout=10) as client:
            for start in range(0, len(acknowledged), 500):
                chunk = acknowledged[start : start + 500]
                batch = [{"user_id": "replay", "item_id": "i0001", "event_id": e} for e in chunk]
                resent = client.post("/events", json={"events": batch}).json()
                assert resent["stored"] == 0 and resent["duplicates"] == len(chunk), resent
    finally:
        server.stop()
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            stored = connection.execute(select(events.c.event_id, events.c.user_id)).all()
    finally:
        engine.dispose()
    streamed = [event_id for event_id, user_id in stored if user_id.startswith("u") and event_id]
    doubled = len(streamed) - len(set(streamed))
    missing = set(acknowledged) - set(streamed)
    assert (len(missing), doubled) == (0, 0), f"missing {sorted(missing)[:10]}, doubled {doubled}"


def test_sigkill_loses_no_acknowledged_event_sqlite(tmp_path: Path) -> None:
    _kill_mid_stream(tmp_path, f"sqlite:///{tmp_path / 'rekko.db'}")


@pytest.mark.db
def test_sigkill_loses_no_acknowledged_event_postgresql(tmp_path: Path) -> None:
    try:
        with temporary_database("postgresql") as url:
            _kill_mid_stream(tmp_path, url)
    except OperationalError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"postgresql server not reachable: {error.orig}")


# -- more concurrent requests than the server takes on -----------------------------------------
async def _flood(base: str, count: int) -> list[tuple[int, float, Any]]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:

        async def one(n: int) -> tuple[int, float, Any]:
            started = time.perf_counter()
            response = await client.get(f"/users/u{n % 120 + 1:04d}/recommendations")
            return (
                response.status_code,
                time.perf_counter() - started,
                (response.headers.get("retry-after"), response.json()),
            )

        flooded, probe = await asyncio.gather(
            asyncio.gather(*(one(n) for n in range(count))), client.get("/health")
        )
    assert probe.status_code == 200  # probes are never refused
    return list(flooded)


def test_requests_beyond_max_in_flight_get_503_at_once(tmp_path: Path) -> None:
    limit = 4
    with running(
        tmp_path, f"sqlite:///{tmp_path / 'rekko.db'}", max_in_flight=str(limit)
    ) as server:
        answers = asyncio.run(_flood(server.base, 300))
        assert httpx.get(f"{server.base}/users/u0001/recommendations").status_code == 200
    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {200, 503}
    served = [seconds for status, seconds, _ in answers if status == 200]
    refused = [(seconds, extra) for status, seconds, extra in answers if status == 503]
    assert len(served) >= limit and refused, statuses
    for _, (retry_after, body) in refused:
        assert retry_after == "1" and body["error"] == "overloaded", body
