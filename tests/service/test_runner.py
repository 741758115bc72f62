"""The service under uvicorn for real, on a loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from rekko.service.runner import prepare, single_worker_server
from rekko.service.testing import settings_for


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_ready(base: str, alive: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert callable(alive) and alive(), "the server stopped"
        assert time.monotonic() < deadline, "the service did not become ready"
        time.sleep(0.1)


def test_single_worker_over_http(tmp_path: Path) -> None:
    port = _free_port()
    server = single_worker_server(settings_for(tmp_path, port=port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, thread.is_alive)
        with httpx.Client(base_url=base, timeout=5) as client:
            body = client.get("/users/u0001/recommendations", params={"k": 3}).json()
            assert len(body["items"]) == 3
            stored = client.post(
                "/events", json={"events": [{"user_id": "u0001", "item_id": "i0001"}]}
            )
            assert stored.json()["stored"] == 1
            assert client.get("/docs").status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=20)
    assert not thread.is_alive()


@pytest.mark.slow
def test_serve_with_two_workers(tmp_path: Path) -> None:
    """``serve()`` with workers > 1: settings reach the worker processes through the
    environment, and all workers serve the same active version."""
    port = _free_port()
    settings = settings_for(tmp_path, workers=2, port=port, demo_users=60, demo_items=40)
    prepare(settings)  # the first model is trained here, where the imports are already done
    environ = {
        **os.environ,
        "REKKO_PORT": str(port),
        "REKKO_WORKERS": "2",
        "REKKO_DATABASE_URL": settings.database_url,
        "REKKO_MODEL_DIR": str(settings.model_dir),
        "REKKO_LOG_LEVEL": "warning",
    }
    code = "from rekko.service import load_settings, serve; serve(load_settings())"
    process = subprocess.Popen([sys.executable, "-c", code], env=environ, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, lambda: process.poll() is None)
        with httpx.Client(base_url=base, timeout=5) as client:
            versions = {
                client.get(f"/users/u{n:04d}/recommendations").json()["model_version"]
                for n in range(20)
            }
            assert len(versions) == 1
            stored = client.post(
                "/events", json={"events": [{"user_id": "u0001", "item_id": "i0001"}]}
            )
            assert stored.json()["stored"] == 1
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
