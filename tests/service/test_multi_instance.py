"""Several ``rekko serve`` processes on one PostgreSQL database and one model folder (marked
``db``): real subprocesses on their own ports, one of them with two workers.

What one instance does reaches the others through the database (events, jobs, the training
lease) and the shared model folder (versions and the active-version pointer), within the
sync interval; training runs once across instances, and a killed instance's lease lapses.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from rekko.service.testing import temporary_database
from rekko.service.training import TRAINING_LEASE, JobRunner, TrainingBusyError, TrainingRequest
from rekko.store import repository as repo
from rekko.store.db import create_db_engine, current_revision, upgrade_database
from rekko.store.registry import ModelRegistry

pytestmark = pytest.mark.db

SYNC_INTERVAL_S = 0.2
#: Events and version changes must reach every instance within this (10 sync intervals).
PROPAGATION_S = 2.0
USER = "u0002"


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for each test, dropped afterwards."""
    try:
        with temporary_database("postgresql") as url:
            yield url
    except OperationalError as error:
        if os.environ.get("CI"):  # CI has the server: a missing one is a failure there
            raise
        pytest.skip(f"postgresql server not reachable: {error.orig}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (name) state ppid ...: the name may hold spaces, so split after its ")".
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Instance:
    """One ``rekko serve`` process (``python -m rekko serve``) with settings from flags and
    ``REKKO_*`` variables; its log goes to a file beside the test's folders."""

    def __init__(
        self,
        name: str,
        folder: Path,
        database_url: str,
        *,
        workers: int = 1,
        model: str = "popularity",
        **settings: Any,
    ) -> None:
        self.name = name
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = folder / f"{name}.log"
        environ = {key: value for key, value in os.environ.items() if key != "REKKO_CONFIG"}
        values = {
            "sync_interval_s": SYNC_INTERVAL_S,
            "demo_users": 60,
            "demo_items": 40,
            "log_level": "warning",
            **settings,
        }
        environ.update({f"REKKO_{key.upper()}": str(value) for key, value in values.items()})
        command = [
            sys.executable,
            "-m",
            "rekko",
            "serve",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
            "--database-url",
            database_url,
            "--model-dir",
            str(folder / "models"),
            "--model",
            model,
        ]
        with self.log.open("wb") as log:
            # Its own process group: the workers of a multi-worker instance stop with it.
            self.process = subprocess.Popen(
                command, env=environ, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=10)

    def get(self, path: str, **params: Any) -> Any:
        """A GET on a fresh connection (with several workers, any of them may answer)."""
        response = httpx.get(f"{self.base}{path}", params=params, timeout=10)
        response.raise_for_status()
        return response.json()

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.base}/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, f"{self.name} stopped:\n{self.log.read_text()}"
            assert time.monotonic() < deadline, f"{self.name} not ready:\n{self.log.read_text()}"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def instances() -> Iterator[list[Instance]]:
    """The instances a test starts; all stopped at its end."""
    started: list[Instance] = []
    yield started
    for instance in started:
        instance.stop()


def _until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` until true; returns the seconds it took."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"{what} not within {timeout} s"
        time.sleep(0.02)
    return time.monotonic() - start


def _steadily(condition: Callable[[], bool], times: int = 20) -> bool:
    """``condition`` holds on ``times`` fresh connections in a row (so on every worker)."""
    return all(condition() for _ in range(times))


def _propagates(check: Callable[[], bool], what: str) -> str:
    """Poll ``check`` on fresh connections (any worker may answer) for a while after a change:
    the last answer that does not show it must come within :data:`PROPAGATION_S`, and at
    least 10 answers after it must all show it."""
    start = time.monotonic()
    answers: list[tuple[float, bool]] = []
    while (elapsed := time.monotonic() - start) < PROPAGATION_S + 1.0 or len(answers) < 30:
        answers.append((elapsed, check()))
    stale = [at for at, shown in answers if not shown]
    last_stale = stale[-1] if stale else 0.0
    after = sum(at > last_stale for at, _ in answers)
    assert last_stale < PROPAGATION_S, f"{what}: still not shown after {last_stale:.2f} s"
    assert after >= 10, f"{what}: only {after} answers after the last stale one"
    first = next(at for at, shown in answers if shown)
    last = f"{last_stale:.2f} s" if stale else "none"
    return f"{len(answers)} answers, first showing it at {first:.2f} s, last not at {last}"


def _wait_job(instance: Instance, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    body: dict[str, Any] = {}

    def finished() -> bool:
        nonlocal body
        body = instance.get(f"/training/jobs/{job_id}")
        return body["status"] in ("succeeded", "failed")

    _until(finished, timeout, f"job {job_id}")
    return body


def _top(instance: Instance, k: int = 5) -> list[str]:
    body = instance.get(f"/users/{USER}/recommendations", k=k)
    return [item["item_id"] for item in body["items"]]


def _serves(instance: Instance, version: str) -> Callable[[], bool]:
    return lambda: bool(instance.get("/ready")["model_version"] == version)


def _versions_by_job(model_dir: Path) -> dict[str | None, list[str]]:
    found: dict[str | None, list[str]] = {}
    for info in ModelRegistry(model_dir).list():
        found.setdefault(info.job_id, []).append(info.version)
    return found


def test_events_and_versions_reach_every_instance(
    database_url: str, tmp_path: Path, instances: list[Instance]
) -> None:
    """Started together on an empty database: the demo is loaded and trained once. An event
    posted to one instance changes the user's list on the other (two workers) within the sync
    interval; activating or rolling back on one reaches the other."""
    one = Instance("one", tmp_path, database_url)
    two = Instance("two", tmp_path, database_url, workers=2)
    instances += [one, two]
    one.wait_ready()
    two.wait_ready()
    engine = create_db_engine(database_url)
    try:
        jobs = repo.list_jobs(engine, 50)
    finally:
        engine.dispose()
    assert [(job["trigger"], job["status"]) for job in jobs] == [("bootstrap", "succeeded")]
    first = jobs[0]["version"]
    assert _versions_by_job(tmp_path / "models") == {jobs[0]["job_id"]: [first]}
    for instance in (one, two):
        assert _steadily(_serves(instance, first))

    # An event on one instance, the list on the other.
    shown = _top(two)
    assert len(shown) == 5
    events = [
        {"user_id": USER, "item_id": item_id, "event_id": f"multi-{n}"}
        for n, item_id in enumerate(shown[:2])
    ]
    with one.client() as client:
        assert client.post("/events", json={"events": events}).json()["stored"] == 2
    took = _propagates(
        lambda: set(shown[:2]).isdisjoint(_top(two)), "the other instance excluding the events"
    )
    print(f"event posted to one -> list on two (2 workers): {took}")

    # A version trained and activated on one instance, rolled back on the other.
    with one.client() as client:
        started = client.post("/training/jobs", json={"activate": "never"})
        assert started.status_code == 202, started.text
        job = _wait_job(one, started.json()["job_id"])
        assert job["status"] == "succeeded" and not job["activated"]
        second = job["version"]
        assert second in {row["version"] for row in two.get("/models")}
        assert client.post(f"/models/{second}/activate").json()["active"] == second
    took = _propagates(
        lambda: two.get(f"/users/{USER}/recommendations")["model_version"] == second,
        "the activation reaching the other instance",
    )
    print(f"activated on one -> served by two: {took}")
    with two.client() as client:
        assert client.post("/models/rollback").json()["active"] == first
    for instance in (one, two):  # the other instance, and the other worker of this one
        took = _propagates(_serves(instance, first), "the rollback reaching every worker")
        print(f"rolled back on two -> served by {instance.name}: {took}")
    assert two.get("/models/active")["active"] == first


def test_a_job_started_on_two_instances_trains_once(
    database_url: str, tmp_path: Path, instances: list[Instance]
) -> None:
    """While one instance trains (in a separate process), starting a job on another answers
    409 with the running job's id; one job, one version."""
    one = Instance("one", tmp_path, database_url, training_executor="process")
    instances.append(one)
    one.wait_ready()
    two = Instance("two", tmp_path, database_url, workers=2, training_executor="process")
    instances.append(two)
    two.wait_ready()
    with one.client() as first, two.client() as second:
        started = first.post("/training/jobs", json={})
        assert started.status_code == 202, started.text
        job_id = started.json()["job_id"]
        answers = [
            second.post("/training/jobs", json={}),
            second.post("/training/jobs", json={"algorithm": "random"}),
            first.post("/training/jobs", json={"algorithm": "random"}),
        ]
        asked_at = time.time()
    job = _wait_job(one, job_id)
    assert job["status"] == "succeeded" and job["activated"]
    assert job["finished_at"] > asked_at  # the others were asked while it still ran
    assert [answer.status_code for answer in answers[:2]] == [409, 409]
    assert all(answer.json()["job_id"] == job_id for answer in answers[:2])
    # The same instance queues another configuration behind its own running job.
    assert answers[2].status_code == 202, answers[2].text
    queued = _wait_job(one, answers[2].json()["job_id"])
    assert queued["status"] == "succeeded"
    assert queued["started_at"] >= job["finished_at"]
    jobs = two.get("/training/jobs")
    assert sorted(row["trigger"] for row in jobs) == ["api", "api", "bootstrap"]
    versions = _versions_by_job(tmp_path / "models")
    assert {key: len(value) for key, value in versions.items()} == {
        row["job_id"]: 1 for row in jobs
    }


def test_scheduled_training_runs_once_per_interval(
    database_url: str, tmp_path: Path, instances: list[Instance]
) -> None:
    """Two instances with the same schedule: jobs never overlap, each starts at least one
    interval after the previous one finished, one version per job."""
    interval = 1.5
    schedule: dict[str, Any] = {
        "retrain_interval_s": interval,
        "retrain_cooldown_s": 0,
        "training_executor": "thread",
    }
    one = Instance("one", tmp_path, database_url, **schedule)
    instances.append(one)
    one.wait_ready()
    two = Instance("two", tmp_path, database_url, workers=2, **schedule)
    instances.append(two)
    two.wait_ready()
    both_ready = time.time()
    time.sleep(7.5)
    for instance in instances:
        instance.stop()
    engine = create_db_engine(database_url)
    try:
        jobs = sorted(repo.list_jobs(engine, 500), key=lambda row: row["created_at"])
    finally:
        engine.dispose()
    assert jobs[0]["trigger"] == "bootstrap"
    every_job = {row["job_id"] for row in jobs}
    if jobs[-1]["finished_at"] is None:  # stopped while it ran: its version may be missing
        jobs.pop()
    scheduled = [row for row in jobs if row["trigger"] == "schedule"]
    assert all(row["status"] == "succeeded" for row in jobs)
    # Once per interval across the three serving processes, not once per process: each job
    # starts an interval or more after the previous one (any of them) finished.
    assert sum(row["created_at"] > both_ready for row in scheduled) >= 2
    for previous, job in pairwise(jobs):
        assert job["created_at"] >= previous["finished_at"] + interval, (previous, job)
    versions = _versions_by_job(tmp_path / "models")
    assert set(versions) <= every_job
    assert {row["job_id"]: len(versions.get(row["job_id"], [])) for row in jobs} == {
        row["job_id"]: 1 for row in jobs
    }
    gaps = [b["created_at"] - a["finished_at"] for a, b in pairwise(jobs)]
    print(
        f"{len(scheduled)} scheduled jobs, gaps {min(gaps):.2f}-{max(gaps):.2f} s (>= {interval})"
    )


def test_a_killed_instance_lease_lapses(
    database_url: str, tmp_path: Path, instances: list[Instance]
) -> None:
    """SIGKILL an instance while it trains: its training process ends too, others answer 409
    until its lease lapses, then its job reads failed and another instance trains."""
    lease_s = 3.0
    settings: dict[str, Any] = {"training_executor": "process", "training_lease_s": lease_s}
    doomed = Instance("doomed", tmp_path, database_url, **settings)
    instances.append(doomed)
    doomed.wait_ready()
    other = Instance("other", tmp_path, database_url, **settings)
    instances.append(other)
    other.wait_ready()
    with doomed.client() as client:
        started = client.post("/training/jobs", json={})
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    _until(lambda: other.get(f"/training/jobs/{job_id}")["status"] == "running", 10, "running")
    training = _until(lambda: bool(_children(doomed.process.pid)), 10, "a training process")
    assert training < 10
    children = _children(doomed.process.pid)
    os.kill(doomed.process.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    doomed.process.wait()
    with other.client() as client:
        busy = client.post("/training/jobs", json={})
        assert busy.status_code == 409 and busy.json()["job_id"] == job_id
        _until(lambda: not any(map(_alive, children)), 10, "the training process ending")
        body: dict[str, Any] = {}

        def abandoned() -> bool:
            nonlocal body
            body = client.get(f"/training/jobs/{job_id}").json()
            return bool(body["status"] == "failed")

        _until(abandoned, lease_s + 10, "the killed job failing")
        lapsed = time.monotonic() - killed_at
        # Not before the lease can have lapsed (renewed every quarter of it), soon after (a
        # few sync intervals; more on a busy machine).
        assert lease_s * 3 / 4 - 0.1 <= lapsed <= lease_s + 5, lapsed
        assert "abandoned" in body["error"] and body["finished_at"] is not None
        print(f"killed job failed {lapsed:.2f} s after SIGKILL (lease {lease_s} s)")
        retry = client.post("/training/jobs", json={})
        assert retry.status_code == 202, retry.text
        job = _wait_job(other, retry.json()["job_id"])
    assert job["status"] == "succeeded" and job["activated"]
    assert other.get("/ready")["model_version"] == job["version"]
    versions = _versions_by_job(tmp_path / "models")
    assert job_id not in versions  # the killed training process saved nothing
    assert len(versions[job["job_id"]]) == 1


def test_a_job_no_longer_due_under_the_lease_is_not_started(
    database_url: str, tmp_path: Path
) -> None:
    """Scheduled and first-start jobs are checked again once the lease is held (another
    instance may have just run them): not due any more, no job and the lease is free."""
    engine = create_db_engine(database_url)
    try:
        upgrade_database(engine)

        def never(job_id: str, algorithm: str, params: dict[str, Any]) -> TrainingRequest:
            raise AssertionError("a job that is not due was prepared")

        runner = JobRunner(engine, ModelRegistry(tmp_path / "models"), never)
        with pytest.raises(TrainingBusyError, match="just run"):
            runner.start("schedule", "popularity", {}, still_due=lambda: False)
        assert repo.list_jobs(engine, 10) == []
        assert repo.try_acquire_lease(engine, TRAINING_LEASE, "another-instance", 60)
    finally:
        engine.dispose()


@pytest.fixture(params=["postgresql", "mariadb"])
def any_database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    try:
        with temporary_database(request.param) as url:
            yield url
    except OperationalError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{request.param} server not reachable: {error.orig}")


def test_instances_starting_at_once_migrate_in_turn(any_database_url: str) -> None:
    """Several processes migrating one empty database at once take turns (without the lock,
    they create the same tables at once: one fails, or they wait on each other for good)."""
    engines = [create_db_engine(any_database_url) for _ in range(4)]
    pool = ThreadPoolExecutor(len(engines))
    try:
        futures = [pool.submit(upgrade_database, engine) for engine in engines]
        done, stuck = wait(futures, timeout=60)
        assert not stuck, "migrations still waiting on each other after 60 s"
        for future in done:
            future.result()
        heads = {current_revision(engine) for engine in engines}
        assert len(heads) == 1 and None not in heads
    finally:
        pool.shutdown(wait=False)  # stuck ones end when the fixture drops the database
        for engine in engines:
            engine.dispose()
