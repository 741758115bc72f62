"""Load figures of the HTTP service on loopback: recommendations, event ingestion, hot swaps.

What it does (method and results are written up in ``benchmarks/service.md``):

1. builds a throwaway service folder: SQLite database (WAL, ``synchronous=FULL``) and model
   registry; loads MovieLens-100K into it (943 users, 1,682 items with titles, 100,000
   ratings stored as events) and trains the model named by ``--model`` through the service's
   own training path (the quality gate included), plus a second version for the swap test;
2. starts ``rekko serve`` (``rekko.service.serve``) in a child process on 127.0.0.1;
3. ``recs``: ``GET /users/{id}/recommendations?k=10`` for random known users with ``wrk``
   (closed loop, fixed connections; Debian's ``wrk`` package) or, without ``wrk``, an asyncio
   + httpx client; reports requests/s and latency percentiles per connection count;
4. ``events``: concurrent clients post batches of new events (unique event ids) to
   ``POST /events``; every acknowledged event is then counted in the database;
5. ``swap``: the ``recs`` load runs while the active version is switched back and forth
   through the admin API; any non-200 answer or socket error counts as a failure;
6. ``ratio``: the ``recs`` load against rekko and against a bare FastAPI app under uvicorn
   that returns a fixed body of the same shape (``benchmarks/bare_app.py``, the same worker
   count), interleaved round by round in one run; reports each side's median requests/s,
   rekko's p99 and the ratio;
7. ``workers``: the ``recs`` load against the same service with ``--workers N`` and with one
   worker (two servers on the same database and model), interleaved; reports the scaling.

``--data demo`` serves the built-in demo shop (the service's default data) instead of
MovieLens-100K.

Everything is bounded in time and count and talks to 127.0.0.1 only. Usage::

    .venv/bin/python benchmarks/service_load.py                   # all scenarios
    .venv/bin/python benchmarks/service_load.py --scenario recs --duration 20 --workers 2
    .venv/bin/python benchmarks/service_load.py --scenario ratio --model hybrid --data demo \
        --workers 1 --connections 16 --threads 2 --rounds 5 --duration 8
    .venv/bin/python benchmarks/service_load.py --scenario workers --workers 2 \
        --connections 16 --threads 2 --rounds 5 --duration 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
ADMIN_KEY = "bench-admin-key-0123456789"
PREFERRED_MODELS = ("ease", "als", "item-knn", "hybrid", "popularity")


def datasets_dir() -> Path:
    return Path(os.environ.get("REKKO_DATASETS", ROOT.parent / "shared" / "datasets"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- set-up --------------------------------------------------------------------------------
def load_movielens(engine: Any, folder: Path) -> tuple[list[str], list[str]]:
    """MovieLens-100K ratings as events (type ``rating``, value = stars) and titles as item
    features. Returns the user and item ids."""
    from rekko.store import repository as repo

    ratings = pd.read_csv(
        folder / "u.data", sep="\t", names=["user", "item", "rating", "timestamp"]
    )
    movies = pd.read_csv(
        folder / "u.item", sep="|", header=None, encoding="latin-1", usecols=[0, 1]
    )
    repo.upsert_items(
        engine, [(str(i), {"title": str(t)}, None) for i, t in movies.itertuples(index=False)]
    )
    repo.add_events(
        engine,
        [
            repo.NewEvent(str(u), str(i), "rating", float(r), float(t))
            for u, i, r, t in ratings.itertuples(index=False)
        ],
    )
    return sorted({str(u) for u in ratings["user"]}), [str(i) for i in movies[0]]


def pick_model(requested: str | None) -> str:
    from rekko.models.registry import available_models

    known = available_models()
    if requested:
        if requested not in known:
            raise SystemExit(f"unknown model {requested!r} (available: {', '.join(known)})")
        return requested
    return next(name for name in PREFERRED_MODELS if name in known)


def prepare_service(
    folder: Path, model: str, workers: int, port: int, impressions: bool, data: str = "ml100k"
) -> dict[str, str]:
    """Load the data, train the first version; returns the environment for ``serve``."""
    from rekko.service.runner import prepare
    from rekko.service.settings import load_settings
    from rekko.store.db import create_db_engine, upgrade_database

    environ = {
        "REKKO_HOST": "127.0.0.1",
        "REKKO_PORT": str(port),
        "REKKO_WORKERS": str(workers),
        "REKKO_DATABASE_URL": f"sqlite:///{folder / 'rekko.db'}",
        "REKKO_MODEL_DIR": str(folder / "models"),
        "REKKO_MODEL": model,
        "REKKO_ADMIN_KEY": ADMIN_KEY,
        "REKKO_EVENT_WEIGHTS": "*=1",
        "REKKO_BOOTSTRAP_DEMO": "false",
        "REKKO_LOG_LEVEL": "warning",
        "REKKO_TRAINING_EXECUTOR": "thread",
        "REKKO_LOG_IMPRESSIONS": "true" if impressions else "false",
    }
    settings = load_settings(environ=environ)
    engine = create_db_engine(settings.database_url)
    upgrade_database(engine)
    started = time.perf_counter()
    if data == "demo":
        from rekko.service.training import load_demo_data

        load_demo_data(engine, settings.demo_users, settings.demo_items)
    else:
        load_movielens(engine, datasets_dir() / "ml-100k")
    engine.dispose()
    print(f"loaded {data} into SQLite in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    prepare(settings)  # trains and activates the first version
    print(f"trained {model} through the service in {time.perf_counter() - started:.1f} s")
    return environ


@contextmanager
def child_server(
    command: list[str], port: int, what: str, *, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` until its ``/ready`` answers 200 on ``port``; stop it afterwards."""
    process = subprocess.Popen(command, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{what} did not start")
            time.sleep(0.2)
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def running_service(
    environ: dict[str, str], port: int
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """``rekko serve`` with ``environ`` in a child process."""
    command = [sys.executable, "-m", "rekko.service"]
    return child_server(command, port, "the service", env={**os.environ, **environ})


def server_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of the server process and its worker processes."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    children = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True
    ).stdout.split()
    for process_id in [str(pid), *children]:
        try:
            fields = Path(f"/proc/{process_id}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


# -- load generators -----------------------------------------------------------------------
WRK_SCRIPT = """
math.randomseed(%(seed)d)
local users = {%(users)s}
request = function()
  local user = users[math.random(#users)]
  return wrk.format("GET", "/users/" .. user .. "/recommendations?k=10")
end
"""


def _seconds(text: str) -> float:
    number, unit = re.match(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def run_wrk(
    port: int, users: list[str], connections: int, duration: float, threads: int = 1
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(WRK_SCRIPT % {"seed": 7, "users": ",".join(f'"{u}"' for u in users)})
    command = [
        "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration:g}s", "--latency",
        "-s", handle.name, f"http://127.0.0.1:{port}",
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    Path(handle.name).unlink()
    result: dict[str, Any] = {"generator": "wrk", "connections": connections, "threads": threads}
    result["requests"] = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    result["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    for label in ("50", "75", "90", "99"):
        found = re.search(rf"^\s+{label}%\s+(\S+)", output, re.MULTILINE)
        result[f"p{label}_ms"] = _seconds(found.group(1)) * 1e3 if found else None
    errors = re.search(r"Socket errors: (.*)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result["socket_errors"] = errors.group(1) if errors else "none"
    result["failed"] = (int(non_2xx.group(1)) if non_2xx else 0) + (
        sum(int(n) for n in re.findall(r"\d+", errors.group(1))) if errors else 0
    )
    return result


async def _python_load(
    port: int, users: list[str], connections: int, duration: float
) -> dict[str, Any]:
    latencies: list[float] = []
    failed = 0
    stop = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=10
    ) as client:

        async def worker(seed: int) -> None:
            nonlocal failed
            rng = random.Random(seed)
            while time.perf_counter() < stop:
                user = users[rng.randrange(len(users))]
                began = time.perf_counter()
                try:
                    response = await client.get(f"/users/{user}/recommendations?k=10")
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - began)
                failed += not ok

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(connections)))
        elapsed = time.perf_counter() - started
    quantiles = np.percentile(latencies, [50, 75, 90, 99]) * 1e3 if latencies else [None] * 4
    return {
        "generator": "python-httpx",
        "connections": connections,
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        **{f"p{q}_ms": float(v) for q, v in zip((50, 75, 90, 99), quantiles, strict=True)},
        "failed": failed,
    }


SERVER_PID = 0


def recommendation_load(
    port: int, users: list[str], connections: int, duration: float
) -> dict[str, Any]:
    cpu_before = server_cpu_seconds(SERVER_PID) if SERVER_PID else 0.0
    if shutil.which("wrk"):
        result = run_wrk(port, users, connections, duration)
    else:
        result = asyncio.run(_python_load(port, users, connections, duration))
    if SERVER_PID and result["requests"]:
        used = server_cpu_seconds(SERVER_PID) - cpu_before
        result["server_cpu_us_per_request"] = round(used / result["requests"] * 1e6)
    result["load_average_1m"] = os.getloadavg()[0]
    return result


async def _post_events(
    port: int,
    users: list[str],
    items: list[str],
    clients: int,
    batch: int,
    batches: int,
) -> dict[str, Any]:
    acknowledged = 0
    failed = 0
    counter = iter(range(batches))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:

        async def worker(seed: int) -> None:
            nonlocal acknowledged, failed
            rng = random.Random(seed)
            for number in counter:
                events = [
                    {
                        "user_id": users[rng.randrange(len(users))],
                        "item_id": items[rng.randrange(len(items))],
                        "type": "view",
                        "event_id": f"bench-{number}-{n}",
                    }
                    for n in range(batch)
                ]
                response = await client.post("/events", json={"events": events})
                if response.status_code == 200:
                    acknowledged += response.json()["stored"]
                else:
                    failed += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "batch": batch,
        "acknowledged": acknowledged,
        "failed_batches": failed,
        "seconds": elapsed,
        "events_per_s": acknowledged / elapsed,
    }


def count_events(database_url: str) -> int:
    from rekko.store import repository as repo
    from rekko.store.db import create_db_engine

    engine = create_db_engine(database_url)
    try:
        return repo.count_events(engine)
    finally:
        engine.dispose()


def swap_under_load(
    port: int, users: list[str], connections: int, duration: float, every: float
) -> dict[str, Any]:
    headers = {"X-API-Key": ADMIN_KEY}
    base = f"http://127.0.0.1:{port}"
    first = httpx.get(f"{base}/ready").json()["model_version"]
    job = httpx.post(
        f"{base}/training/jobs", json={"activate": "never"}, headers=headers, timeout=30
    ).json()
    while True:
        status = httpx.get(f"{base}/training/jobs/{job['job_id']}", headers=headers).json()
        if status["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.5)
    second = status["version"]
    swaps = 0
    stop = threading.Event()

    def swapper() -> None:
        nonlocal swaps
        while not stop.wait(every):
            version = second if swaps % 2 == 0 else first
            httpx.post(f"{base}/models/{version}/activate", headers=headers, timeout=30)
            swaps += 1

    thread = threading.Thread(target=swapper)
    thread.start()
    try:
        result = recommendation_load(port, users, connections, duration)
    finally:
        stop.set()
        thread.join()
    return {**result, "swaps": swaps, "versions": [first, second]}


def bare_app(port: int, workers: int) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """The reference app (``benchmarks/bare_app.py``) in a child process."""
    script = Path(__file__).resolve().parent / "bare_app.py"
    command = [sys.executable, str(script), "--port", str(port), "--workers", str(workers)]
    return child_server(command, port, "the bare app")


def interleaved_runs(
    ports: dict[str, int],
    users: list[str],
    connections: int,
    duration: float,
    rounds: int,
    threads: int,
) -> dict[str, list[dict[str, Any]]]:
    """The same wrk load against each server in ``ports``, interleaved: the order rotates
    every round, so that a slower or faster stretch of a shared machine hits every side."""
    if not shutil.which("wrk"):
        raise SystemExit("the ratio and workers scenarios need wrk (Debian's wrk package)")
    sides = list(ports)
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    for side in sides:  # warm-up
        run_wrk(ports[side], users, connections, 2, threads)
    for number in range(rounds):
        shift = number % len(sides)
        for side in sides[shift:] + sides[:shift]:
            row = run_wrk(ports[side], users, connections, duration, threads)
            print(json.dumps({"side": side, "round": number, **row}))
            runs[side].append(row)
    return runs


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return float(np.median([row[key] for row in rows]))


def compared_runs(
    ports: dict[str, int],
    users: list[str],
    connections: int,
    duration: float,
    rounds: int,
    threads: int,
) -> dict[str, Any]:
    """Two servers under the same load, interleaved: each side's median requests/s and
    latencies, and ``ratio``, the first side's requests/s over the second's (rekko over the
    bare app; N workers over one)."""
    runs = interleaved_runs(ports, users, connections, duration, rounds, threads)
    first, second = list(ports)
    summary: dict[str, Any] = {
        "connections": connections,
        "threads": threads,
        "rounds": rounds,
        "duration_s": duration,
        "sides": [first, second],
        "ratio": _median(runs[first], "rps") / _median(runs[second], "rps"),
    }
    for side in (first, second):
        for key in ("rps", "p50_ms", "p99_ms"):
            summary[f"{side}_{key}"] = _median(runs[side], key)
    summary["failed"] = sum(row["failed"] for side in runs for row in runs[side])
    summary["runs"] = runs
    return summary


# -- main ----------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scenario",
        choices=["recs", "events", "swap", "ratio", "workers", "all"],
        default="all",
    )
    parser.add_argument("--data", choices=["ml100k", "demo"], default="ml100k")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (ratio)")
    parser.add_argument("--model", help="algorithm (default: the first of ease, als, ...)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per load run")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--event-clients", type=int, default=4)
    parser.add_argument("--event-batch", type=int, default=1000)
    parser.add_argument("--event-batches", type=int, default=100)
    parser.add_argument("--swap-every", type=float, default=0.5)
    parser.add_argument(
        "--impressions", choices=["on", "off"], default="on", help="log impressions (default on)"
    )
    parser.add_argument("--output", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    global SERVER_PID

    model = pick_model(args.model)
    port = free_port()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "model": model,
        "workers": args.workers,
        "impressions": args.impressions,
        "data": args.data,
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip(),
    }
    with tempfile.TemporaryDirectory(prefix="rekko-bench-") as temporary:
        folder = Path(temporary)
        environ = prepare_service(
            folder, model, args.workers, port, args.impressions == "on", args.data
        )
        users, items = load_users_items(folder)
        with running_service(environ, port) as server:
            SERVER_PID = server.pid
            if args.scenario in ("recs", "all"):
                recommendation_load(port, users, 4, 3)  # warm-up
                results["recs"] = []
                for connections in args.connections:
                    row = recommendation_load(port, users, connections, args.duration)
                    print(json.dumps(row))
                    results["recs"].append(row)
            if args.scenario in ("events", "all"):
                before = count_events(environ["REKKO_DATABASE_URL"])
                row = asyncio.run(
                    _post_events(
                        port,
                        users,
                        items,
                        args.event_clients,
                        args.event_batch,
                        args.event_batches,
                    )
                )
                row["in_database"] = count_events(environ["REKKO_DATABASE_URL"]) - before
                row["all_acknowledged_stored"] = row["in_database"] == row["acknowledged"]
                print(json.dumps(row))
                results["events"] = row
            if args.scenario == "ratio":
                bare_port = free_port()
                with bare_app(bare_port, args.workers):
                    results["ratio"] = [
                        compared_runs(
                            {"rekko": port, "bare": bare_port},
                            users,
                            connections,
                            args.duration,
                            args.rounds,
                            args.threads,
                        )
                        for connections in args.connections
                    ]
            if args.scenario == "workers":
                if args.workers < 2:
                    raise SystemExit("--scenario workers compares --workers N (N >= 2) with 1")
                one_port = free_port()
                single = {**environ, "REKKO_PORT": str(one_port), "REKKO_WORKERS": "1"}
                with running_service(single, one_port):
                    results["workers"] = [
                        compared_runs(
                            {f"{args.workers} workers": port, "1 worker": one_port},
                            users,
                            connections,
                            args.duration,
                            args.rounds,
                            args.threads,
                        )
                        for connections in args.connections
                    ]
            if args.scenario in ("swap", "all"):
                row = swap_under_load(port, users, 4, args.duration, args.swap_every)
                print(json.dumps(row))
                results["swap"] = row
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


def load_users_items(folder: Path) -> tuple[list[str], list[str]]:
    from rekko.store.db import create_db_engine
    from rekko.store.repository import training_data

    engine = create_db_engine(f"sqlite:///{folder / 'rekko.db'}")
    try:
        data = training_data(engine)
    finally:
        engine.dispose()
    return sorted(set(data.events["user_id"])), sorted(set(data.events["item_id"]))


if __name__ == "__main__":
    main()
