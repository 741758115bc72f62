"""Training jobs: fit a model on the stored data, gate it on a recent holdout, save a version.

The quality gate: the most recent ``holdout_fraction`` of events (by time) is held out. The
candidate configuration is fitted on the rest and scored on it (``gate_metric``, e.g.
``ndcg@10``); so is the active version's configuration (algorithm and parameters) on the very
same split. The new version is activated only when its score is at least the active one's
minus ``gate_tolerance``; otherwise it is kept as ``rejected`` with the reason, and can still
be activated by hand. Either way the saved model is then fitted on all the data.

:func:`train_version` is a plain function of a picklable :class:`TrainingRequest`, so it runs
in a separate process (the default: training does not slow down serving) or in a thread.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import multiprocessing
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from rekko.data.dataset import Dataset, EventWeights, FeatureKind
from rekko.data.splits import TemporalSplit
from rekko.errors import DataError, RekkoError
from rekko.evaluation.evaluate import Protocol, evaluate
from rekko.models.base import Recommender
from rekko.models.registry import create_model, load_model
from rekko.service.errors import public_message
from rekko.service.settings import GATE_METRIC
from rekko.store import repository as repo
from rekko.store.db import create_db_engine
from rekko.store.imports import RATING_EVENT
from rekko.store.registry import ModelRegistry, VersionInfo

logger = logging.getLogger(__name__)

TRAINING_LEASE = "training"
#: The training lease lapses this long after its holder last renewed it (the default of the
#: ``training_lease_s`` setting): then another process may train, and the jobs of the holder,
#: which must have died, read as failed. A running job renews it LEASE_RENEWALS times as often.
LEASE_TTL_S = 90.0
LEASE_RENEWALS = 4
#: Jobs one process holds at most, running and queued (of different configurations).
MAX_PENDING_JOBS = 4
Activation = Literal["auto", "never"]


class TrainingBusyError(RekkoError):
    """A training job cannot start now: another one holds the training lease, or the same
    configuration is already queued or running (``job_id`` names that job when known)."""

    def __init__(self, message: str, job_id: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


@dataclass(frozen=True)
class TrainingRequest:
    """Everything a training run needs (plain values: it may cross a process boundary)."""

    job_id: str
    database_url: str
    model_dir: str
    algorithm: str
    params: dict[str, Any]
    event_weights: str
    item_feature_kinds: dict[str, str] = field(default_factory=dict)
    holdout_fraction: float = 0.2
    gate_metric: str = "ndcg@10"
    gate_tolerance: float = 0.0
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    #: A model folder trained elsewhere (``rekko train`` / ``tune``) to register instead of
    #: fitting one; its configuration goes through the quality gate as a trained one would.
    model_path: str | None = None


@dataclass(frozen=True)
class TrainingOutcome:
    version: str
    accepted: bool
    reason: str
    metrics: dict[str, float]
    baseline: dict[str, float] | None
    watermark: int


def feature_kinds(
    frame: pd.DataFrame, id_column: str, configured: Mapping[str, str]
) -> dict[str, FeatureKind]:
    """Kinds of stored feature columns: configured ones, lists as ``multi``, coordinates by
    name; others are left to :class:`~rekko.data.dataset.FeatureTable`'s inference."""
    kinds: dict[str, Any] = {}
    for name in frame.columns:
        if name == id_column:
            continue
        if name in configured:
            kinds[name] = configured[name]
            continue
        values = frame[name].dropna()
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if any(isinstance(v, (list, tuple)) for v in values):
            kinds[name] = "multi"
        elif numeric and name.lower() in ("latitude", "lat"):
            kinds[name] = "latitude"
        elif numeric and name.lower() in ("longitude", "lon", "lng"):
            kinds[name] = "longitude"
        elif values.map(lambda v: isinstance(v, (dict, bool))).any():
            kinds[name] = "categorical"
    return kinds


def _clean_features(frame: pd.DataFrame | None, id_column: str) -> pd.DataFrame | None:
    """Nested values (objects) become text so that feature tables can hold them."""
    if frame is None:
        return None
    frame = frame.copy()
    for name in frame.columns:
        if name != id_column and frame[name].map(lambda v: isinstance(v, dict)).any():
            frame[name] = frame[name].map(lambda v: None if v is None else str(v))
    return frame


def build_dataset(data: repo.TrainingData, request: TrainingRequest) -> Dataset:
    """The stored events and features as a :class:`Dataset`: implicit, weighted events, or
    explicit ratings when every stored event is a ``rating`` (as an import of ratings
    stores them)."""
    if data.events.empty:
        raise DataError("no events are stored yet: post events to /events first")
    events = data.events
    blank = events["event"].astype(str).str.strip() == ""
    if blank.any():  # stored before event types were checked: they have no weight
        logger.warning("training leaves out %d event(s) without an event type", int(blank.sum()))
        events = events[~blank]
    items = _clean_features(data.items, "item_id")
    users = _clean_features(data.users, "user_id")
    if (events["event"] == RATING_EVENT).all():
        # Only ratings (imported from a source of ratings): train on them as rekko train
        # does on that source, as explicit feedback.
        events = events.drop(columns="event").rename(columns={"value": "rating"})
    return Dataset.from_frame(
        events,
        item_features=items,
        user_features=users,
        item_feature_kinds=feature_kinds(items, "item_id", request.item_feature_kinds)
        if items is not None
        else None,
        user_feature_kinds=feature_kinds(users, "user_id", {}) if users is not None else None,
        event_weights=EventWeights.parse(request.event_weights),
        name="service",
        source="events table",
    )


def _holdout_metrics(
    algorithm: str, params: Mapping[str, Any], train: Dataset, test: Dataset, k: int
) -> dict[str, float]:
    row = evaluate(
        {algorithm: create_model(algorithm, **params)},
        train=train,
        test=test,
        protocol=Protocol(ks=(k,), beyond_accuracy=False),
    ).iloc[0]
    return {
        str(name): float(value)
        for name, value in row.items()
        if name != "model" and isinstance(value, (int, float, np.number))
    }


def train_version(request: TrainingRequest) -> TrainingOutcome:
    """Read the database, gate the candidate on a recent holdout, save the version."""
    match = GATE_METRIC.match(request.gate_metric)
    if match is None:
        raise DataError(f"gate_metric must look like ndcg@10, got {request.gate_metric!r}")
    k = int(match.group(2))
    engine = create_db_engine(request.database_url, sqlite_synchronous=request.sqlite_synchronous)
    try:
        data = repo.training_data(engine)
    finally:
        engine.dispose()
    dataset = build_dataset(data, request)
    # A pushed model's items are checked before its configuration is gated.
    pushed = load_pushed(request.model_path, data) if request.model_path is not None else None
    registry = ModelRegistry(request.model_dir)
    active = registry.info(registry.active) if registry.active else None
    metrics: dict[str, float] = {}
    baseline: dict[str, float] | None = None
    parts: tuple[Dataset, Dataset] | None = None
    try:
        parts = TemporalSplit(test_fraction=request.holdout_fraction).split(dataset)
    except DataError as error:
        logger.warning("training without a holdout: %s", error)
    if parts is not None:
        train, test = parts
        metrics = _holdout_metrics(request.algorithm, request.params, train, test, k)
        if active is not None:
            same = active.algorithm == request.algorithm and active.params == request.params
            baseline = (
                metrics
                if same
                else _holdout_metrics(active.algorithm, active.params, train, test, k)
            )
    score = metrics.get(request.gate_metric)
    if active is None:
        accepted, reason = True, "no active version yet"
    elif baseline is None or score is None:
        accepted = True
        reason = "no holdout possible; activated without a quality gate"
    else:
        reference = baseline.get(request.gate_metric, 0.0)
        accepted = score >= reference - request.gate_tolerance
        comparison = ">=" if accepted else "<"
        reason = (
            f"{request.gate_metric} {score:.4f} {comparison} {reference:.4f} of the active "
            f"version {active.version} ({active.algorithm}) on the same recent holdout"
            + (f" minus tolerance {request.gate_tolerance:g}" if request.gate_tolerance else "")
        )
    model = (
        pushed
        if pushed is not None
        else create_model(request.algorithm, **request.params).fit(dataset)
    )
    info = VersionInfo(
        version=registry.new_version_name(request.algorithm),
        algorithm=request.algorithm,
        params=dict(request.params),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        data_fingerprint=str(model.metadata_.get("data_fingerprint")),
        events_watermark=data.watermark,
        metrics=metrics,
        status="candidate" if accepted else "rejected",
        reason=reason,
        job_id=request.job_id,
        holdout_fraction=request.holdout_fraction,
        baseline_metrics=baseline,
        n_events=len(data.events),
        n_users=dataset.n_users,
        n_items=dataset.n_items,
        pushed_from=request.model_path,
        model_hash=folder_hash(request.model_path) if request.model_path else None,
    )
    registry.save(model, info)
    logger.info("trained %s: %s", info.version, reason)
    return TrainingOutcome(info.version, accepted, reason, metrics, baseline, data.watermark)


def pushed_configuration(path: str | Path) -> tuple[str, dict[str, Any]]:
    """The algorithm and parameters of a model folder written by ``rekko train`` / ``tune``
    (a :class:`~rekko.errors.ModelError` says what is wrong with a folder that is not one)."""
    model = load_model(path)
    return model.name, model.params.model_dump(mode="json")


def folder_hash(path: str | Path) -> str:
    """A hash of a model folder's files (names and bytes), to recognise a folder pushed
    before."""
    digest = hashlib.sha256()
    root = Path(path)
    for file in sorted(f for f in root.rglob("*") if f.is_file()):
        digest.update(str(file.relative_to(root)).encode() + b"\0")
        digest.update(file.read_bytes())
    return digest.hexdigest()


def load_pushed(path: str, data: repo.TrainingData) -> Recommender:
    """The model of a pushed folder, once its items are checked against the catalogue: every
    item it can recommend must be one the service knows (in the catalogue or in events)."""
    model = load_model(path)
    known = set(data.events["item_id"].astype(str))
    if data.items is not None:
        known.update(data.items["item_id"].astype(str))
    items = [str(item) for item in model.fitted().items.external_ids]
    unknown = [item for item in items if item not in known]
    if unknown:
        shown = ", ".join(repr(item) for item in unknown[:5])
        raise DataError(
            f"{len(unknown)} of the model's {len(items)} items are not in the service's "
            f"catalogue or events (e.g. {shown}): import the data it was trained on first "
            "(rekko import)"
        )
    return model


def _exit_with_parent() -> None:
    """End this (training) process as soon as the process that started it is gone: a service
    killed with SIGKILL must not leave a child that saves an orphan version and then waits
    forever for its next task."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, name="rekko-parent-watch", daemon=True).start()


def _spawned(request: TrainingRequest) -> TrainingOutcome:
    # Entry point in the child process: logging there is the child's own.
    logging.basicConfig(level=logging.INFO)
    _exit_with_parent()
    return train_version(request)


class JobRunner:
    """Runs one training job at a time per process, and at most one across processes (a
    lease in the database). Job state lives in the database, so any worker answers status.

    Jobs of other configurations wait in this process's queue; a configuration (algorithm
    and parameters) is queued or running at most once.

    Only the lease holder has unfinished jobs, and it keeps the lease until they have
    finished. So whoever takes a lapsed lease (``lease_s`` after its holder last renewed it)
    marks the unfinished jobs it finds as failed: their process died.
    """

    def __init__(
        self,
        engine: Engine,
        registry: ModelRegistry,
        make_request: Callable[[str, str, dict[str, Any]], TrainingRequest],
        *,
        executor: Literal["process", "thread"] = "process",
        timeout_s: float = 3600.0,
        lease_s: float = LEASE_TTL_S,
        before_activate: Callable[[str], object] | None = None,
        on_activated: Callable[[str], None] | None = None,
        on_finished: Callable[[str, bool, bool], None] | None = None,
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.make_request = make_request
        self.executor = executor
        self.timeout_s = timeout_s
        self.lease_s = lease_s
        self.before_activate = before_activate
        self.on_activated = on_activated
        self.on_finished = on_finished
        self.holder = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._threads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rekko-train")
        self._running: Future[None] | None = None
        self._lock = threading.Lock()
        #: Jobs of this process not finished yet: job id -> (algorithm, parameters).
        self._pending: dict[str, tuple[str, dict[str, Any]]] = {}

    def start(
        self,
        trigger: str,
        algorithm: str,
        params: Mapping[str, Any],
        activate: Activation = "auto",
        *,
        executor: Literal["process", "thread"] | None = None,
        model_path: str | None = None,
        still_due: Callable[[], bool] | None = None,
    ) -> str:
        """Queue a job and return its id. Raises :class:`TrainingBusyError` when another
        process is training, or when this configuration is already queued or running here.
        With ``model_path`` the job registers that folder instead of fitting a model.

        ``still_due`` is asked once the lease is held (a scheduled job: another process may
        have run it between the caller's check and now); ``False`` raises
        :class:`TrainingBusyError` too."""
        with self._lock:
            wanted = (algorithm, {**params, "_model_path": model_path})
            for job_id, pending in self._pending.items():
                if pending == wanted:
                    raise TrainingBusyError(
                        f"a {algorithm} job with these parameters is already queued or "
                        f"running: {job_id}",
                        job_id,
                    )
            if len(self._pending) >= MAX_PENDING_JOBS:
                raise TrainingBusyError(
                    f"{len(self._pending)} training jobs are queued or running already; try "
                    "again when one ends",
                    next(iter(self._pending)),
                )
            if not repo.try_acquire_lease(self.engine, TRAINING_LEASE, self.holder, self.lease_s):
                running = repo.unfinished_jobs(self.engine)
                raise TrainingBusyError(
                    "a training job is already running; try again when it ends",
                    running[0]["job_id"] if running else None,
                )
            job_id = secrets.token_hex(8)
            try:
                if not self._pending:
                    self._fail_abandoned()
                if still_due is not None and not still_due():
                    raise TrainingBusyError("another process has just run this job")
                repo.create_job(
                    self.engine, job_id, trigger=trigger, algorithm=algorithm, params=params
                )
                request = self.make_request(job_id, algorithm, dict(params))
                if model_path is not None:
                    request = dataclasses.replace(request, model_path=model_path)
                self._pending[job_id] = wanted
                self._running = self._threads.submit(
                    self._run, request, activate, executor or self.executor
                )
            except BaseException:
                self._pending.pop(job_id, None)
                if not self._pending:
                    repo.release_lease(self.engine, TRAINING_LEASE, self.holder)
                raise
            return job_id

    def _fail_abandoned(self) -> int:
        """With the lease just taken and no job of this process pending, every unfinished
        job belongs to a holder whose lease lapsed: mark them failed."""
        count = repo.fail_stale_jobs(self.engine, older_than=time.time())
        if count:
            logger.warning("%d training job(s) of a stopped process marked as failed", count)
        return count

    def reap_abandoned(self) -> int:
        """Fail the unfinished jobs of a process whose lease lapsed (it was killed), so that
        their status does not read ``running`` forever; returns how many. Cheap when there
        are none (one query): the sync loop calls it."""
        with self._lock:
            if self._pending or not repo.unfinished_jobs(self.engine):
                return 0
            if not repo.try_acquire_lease(self.engine, TRAINING_LEASE, self.holder, self.lease_s):
                return 0  # its holder is alive (or another process is reaping)
            try:
                return self._fail_abandoned()
            finally:
                repo.release_lease(self.engine, TRAINING_LEASE, self.holder)

    def run_now(
        self,
        trigger: str,
        algorithm: str,
        params: Mapping[str, Any],
        *,
        still_due: Callable[[], bool] | None = None,
    ) -> str:
        """Train in this process and wait for it (first start); returns the job id."""
        job_id = self.start(trigger, algorithm, params, executor="thread", still_due=still_due)
        self.wait()
        return job_id

    def wait(self, timeout: float | None = None) -> None:
        running = self._running
        if running is not None:
            running.result(timeout=timeout)

    @property
    def busy(self) -> bool:
        running = self._running
        return running is not None and not running.done()

    def _train(
        self, request: TrainingRequest, executor: Literal["process", "thread"]
    ) -> TrainingOutcome:
        if executor == "thread":
            return train_version(request)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            return pool.submit(_spawned, request).result(timeout=self.timeout_s)

    def _run(
        self,
        request: TrainingRequest,
        activate: Activation,
        executor: Literal["process", "thread"],
    ) -> None:
        job_id = request.job_id
        succeeded = activated = False
        done = threading.Event()
        heartbeat = threading.Thread(target=self._renew_lease, args=(done,), daemon=True)
        heartbeat.start()
        try:
            # The lease may have lapsed while this job waited behind another one.
            if not repo.try_acquire_lease(self.engine, TRAINING_LEASE, self.holder, self.lease_s):
                raise TrainingBusyError("another process started training while this job waited")
            repo.update_job(self.engine, job_id, status="running", started_at=time.time())
            outcome = self._train(request, executor)
            if not repo.try_acquire_lease(self.engine, TRAINING_LEASE, self.holder, self.lease_s):
                # This process stalled past the lease: another one took over and may train.
                raise TrainingBusyError(
                    f"the training lease lapsed while this job ran; {outcome.version} was "
                    "saved but not activated"
                )
            if activate == "auto" and outcome.accepted:
                if self.before_activate is not None:
                    self.before_activate(outcome.version)  # raises if it cannot be served
                self.registry.activate(outcome.version)
                activated = True
                if self.on_activated is not None:
                    # Serve the new version before the job reads as finished.
                    self.on_activated(outcome.version)
            repo.update_job(
                self.engine,
                job_id,
                status="succeeded",
                version=outcome.version,
                activated=activated,
                reason=outcome.reason
                if activate == "auto"
                else f"{outcome.reason} (not activated: activate=never)",
                metrics=outcome.metrics,
                events_watermark=outcome.watermark,
                finished_at=time.time(),
            )
            succeeded = True
        except Exception as error:
            logger.exception("training job %s failed", job_id)
            repo.update_job(
                self.engine,
                job_id,
                status="failed",
                error=public_message(error),
                finished_at=time.time(),
            )
        finally:
            done.set()
            heartbeat.join()
            with self._lock:
                self._pending.pop(job_id, None)
                if not self._pending:  # the next queued job keeps the lease
                    repo.release_lease(self.engine, TRAINING_LEASE, self.holder)
            if self.on_finished is not None:
                try:
                    self.on_finished(job_id, succeeded, activated)
                except Exception:
                    logger.exception("after training job %s", job_id)

    def _renew_lease(self, done: threading.Event) -> None:
        while not done.wait(self.lease_s / LEASE_RENEWALS):
            try:
                repo.try_acquire_lease(self.engine, TRAINING_LEASE, self.holder, self.lease_s)
            except Exception:
                logger.exception("could not renew the training lease")

    def shutdown(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)


def load_demo_data(engine: Engine, n_users: int = 600, n_items: int = 400) -> int:
    """Store the demo shop (items, users, events) in an empty database; returns events."""
    from rekko.data.demo import demo_frames

    events, items, users = demo_frames(n_users, n_items)
    item_rows: list[tuple[str, dict[str, Any], Any]] = []
    for record in items.to_dict("records"):
        item_id = str(record.pop("item_id"))
        record["tags"] = [t for t in str(record["tags"]).split("|") if t]
        item_rows.append((item_id, _plain(record), None))
    repo.upsert_items(engine, item_rows)
    user_rows = []
    for record in users.to_dict("records"):
        user_id = str(record.pop("user_id"))
        user_rows.append((user_id, _plain(record)))
    repo.upsert_users(engine, user_rows)
    batch = [
        repo.NewEvent(
            user_id=str(user_id),
            item_id=str(item_id),
            event_type=str(event_type),
            value=1.0,
            occurred_at=float(timestamp),
        )
        for user_id, item_id, event_type, timestamp in zip(
            events["user_id"].tolist(),
            events["item_id"].tolist(),
            events["event"].tolist(),
            events["timestamp"].tolist(),
            strict=True,
        )
    ]
    repo.add_events(engine, batch)
    return len(batch)


def _plain(record: Mapping[Any, Any]) -> dict[str, Any]:
    """JSON-ready values (numpy scalars to Python)."""
    return {
        str(key): value.item() if isinstance(value, np.generic) else value
        for key, value in record.items()
    }
