"""Everything one app instance holds: settings, database, registry, models, jobs, metrics.

Built by :func:`rekko.service.app.create_app` (never at import time). Blocking work (database,
loading models) runs in worker threads; :meth:`ServiceState.sync` is what the background loop
calls every ``sync_interval_s``: it follows the active-version pointer, folds new events into
the served models, refreshes the catalogue, writes buffered impressions and starts scheduled
retraining.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from sqlalchemy import Engine

from rekko.errors import DataError
from rekko.service.metrics import ServiceMetrics
from rekko.service.serving import Catalogue, ModelPool, ServedModel, bucket
from rekko.service.settings import ServeSettings
from rekko.service.training import JobRunner, TrainingBusyError, TrainingRequest, load_demo_data
from rekko.store import repository as repo
from rekko.store.db import create_db_engine, upgrade_database
from rekko.store.registry import ModelRegistry

if TYPE_CHECKING:
    from rekko.store.imports import Follower

logger = logging.getLogger(__name__)

#: Impressions buffered in memory at most (older ones are dropped if the database lags).
MAX_BUFFERED_IMPRESSIONS = 1_000_000
#: Impressions written per transaction, and the pause between two such writes.
IMPRESSION_CHUNK = 500
IMPRESSION_PAUSE_S = 0.003
#: How old the dashboard's online metrics may be.
OVERVIEW_METRICS_MAX_AGE_S = 10.0
#: A sync step that keeps failing the same way is logged again after this many failures.
SYNC_FAILURE_REMINDER = 300


class ImpressionLog:
    """Impressions wait here and are written in batches by the sync loop."""

    def __init__(self) -> None:
        self._buffer: deque[repo.Impression] = deque(maxlen=MAX_BUFFERED_IMPRESSIONS)

    def add(self, user_id: str, version: str, item_ids: list[str], request_id: str) -> None:
        now = time.time()
        self._buffer.extend(
            repo.Impression(request_id, user_id, item_id, rank, version, now)
            for rank, item_id in enumerate(item_ids, start=1)
        )

    def drain(self, limit: int = 100_000) -> list[repo.Impression]:
        out: list[repo.Impression] = []
        while self._buffer and len(out) < limit:
            out.append(self._buffer.popleft())
        return out

    def __len__(self) -> int:
        return len(self._buffer)


class ServiceState:
    """The live parts of one app instance."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.engine: Engine = create_db_engine(
            settings.database_url, sqlite_synchronous=settings.sqlite_synchronous
        )
        self.registry = ModelRegistry(settings.model_dir)
        self.metrics = ServiceMetrics()
        self.weights = settings.weights()
        self.pool = ModelPool(self.registry, self.weights, on_swap=self.metrics.set_active)
        self.catalogue = Catalogue()
        self.impressions = ImpressionLog()
        self.jobs = JobRunner(
            self.engine,
            self.registry,
            self._training_request,
            executor=settings.training_executor,
            timeout_s=settings.training_timeout_s,
            lease_s=settings.training_lease_s,
            before_activate=lambda version: self.pool.load(version, self.engine),
            on_activated=self._version_activated,
            on_finished=self._job_finished,
        )
        self.worker_id = secrets.token_hex(4)
        self._sync_lock = threading.Lock()
        self.sync_failures = Counter(
            "rekko_sync_failures",
            "Failed steps of the background sync loop, by step.",
            ["step"],
            registry=self.metrics.registry,
        )
        #: Per failing sync step: (the error's class and message, failures in a row).
        self._failing: dict[str, tuple[str, int]] = {}
        self.started_at = time.time()
        self.follower = self._follower()
        self._overview_metrics: tuple[float, list[dict[str, Any]]] | None = None

    # -- start and stop --------------------------------------------------------------------
    def prepare(self) -> None:
        """Migrate the schema; on an empty database load the demo and train; load models."""
        prepare_database(self.settings, self.engine, self.registry, self.jobs)
        self.catalogue.refresh(self.engine)
        self.pool.refresh(self.engine, force=True)

    def close(self) -> None:
        """Write what is buffered and close. Waits for a sync round still running: the loop's
        task is cancelled on shutdown, but the thread running its round goes on, and would
        otherwise write to the database (and its files) after it was closed."""
        with self._sync_lock:
            self.flush_impressions()
            self.jobs.shutdown()
            if self.follower is not None:
                self.follower.close()
            self.engine.dispose()

    # -- following the application's table ------------------------------------------------
    def _follower(self) -> Follower | None:
        settings = self.settings
        if settings.follow is None or settings.data is None:
            return None
        from rekko.store.imports import Follower

        return Follower(settings.data, settings.follow)

    def follow(self) -> int:
        """Take in the followed table's new rows (one process at a time: a lease); returns
        the number of events stored. The events step of the same sync round folds them in."""
        follower = self.follower
        if follower is None:
            return 0
        ttl = max(10.0, 10 * self.settings.sync_interval_s)
        if not repo.try_acquire_lease(self.engine, "follow", self.jobs.holder, ttl):
            return 0
        return follower.catch_up(self.engine, self.weights)

    # -- training --------------------------------------------------------------------------
    def _training_request(
        self, job_id: str, algorithm: str, params: dict[str, Any]
    ) -> TrainingRequest:
        settings = self.settings
        return TrainingRequest(
            job_id=job_id,
            database_url=settings.database_url,
            model_dir=str(settings.model_dir),
            algorithm=algorithm,
            params=params,
            event_weights=settings.event_weights,
            item_feature_kinds=dict(settings.item_feature_kinds),
            holdout_fraction=settings.holdout_fraction,
            gate_metric=settings.gate_metric,
            gate_tolerance=settings.gate_tolerance,
            sqlite_synchronous=settings.sqlite_synchronous,
        )

    def _version_activated(self, version: str) -> None:
        self.pool.refresh(self.engine)

    def _job_finished(self, job_id: str, succeeded: bool, activated: bool) -> None:
        self.metrics.training_jobs.labels(
            "succeeded" if succeeded else "failed", str(activated).lower()
        ).inc()

    def maybe_retrain(self) -> str | None:
        """Start a scheduled or event-triggered job when one is due; returns its id."""
        settings = self.settings
        if settings.retrain_interval_s is None and settings.retrain_after_events is None:
            return None
        if self.jobs.busy:
            return None
        trigger = self._retrain_trigger()
        if trigger is None:
            return None
        try:
            # Asked again under the training lease: another instance may have just run it.
            return self.jobs.start(
                trigger,
                settings.model,
                settings.model_params,
                still_due=lambda: self._retrain_trigger() is not None,
            )
        except TrainingBusyError:
            return None

    def _retrain_trigger(self) -> str | None:
        """Why a job is due now ("events" or "schedule"), or ``None``."""
        settings = self.settings
        last = repo.last_finished_job(self.engine)
        now = time.time()
        if last is not None and now - float(last["finished_at"]) < settings.retrain_cooldown_s:
            return None
        trigger = None
        if settings.retrain_after_events is not None:
            # Events since the newest trained version, activated or not: a version the quality
            # gate kept back has seen those events too, so they do not trigger another job.
            newest = self.registry.newest()
            watermark = newest.events_watermark if newest is not None else 0
            if repo.count_events_after(self.engine, watermark) >= settings.retrain_after_events:
                trigger = "events"
        if trigger is None and settings.retrain_interval_s is not None:
            since = float(last["finished_at"]) if last is not None else self.started_at
            if now - since >= settings.retrain_interval_s:
                trigger = "schedule"
        return trigger

    # -- the sync loop ---------------------------------------------------------------------
    def sync_events(self, *, serving_only: bool = False) -> int:
        """Fold stored events into the loaded models (only those serving traffic now, the
        active version and an A/B arm, with ``serving_only``); returns the number applied
        to the active version."""
        applied = 0
        active = self.pool.active
        models = self.pool.serving() if serving_only else self.pool.loaded()
        for served in models:
            count = served.sync(self.engine)
            if count:
                self.metrics.events_applied.labels(served.version).inc(count)
            if served is active:
                applied = count
        return applied

    def flush_impressions(self) -> int:
        """Write the buffered impressions; returns how many were written.

        In chunks with a pause between them, so that a second's worth of impressions (10,000
        rows at 1,000 lists of 10 per second) never holds the interpreter for long while the
        same process answers requests: their latency tail stays that of the ranking.
        """
        written, pending = 0, len(self.impressions)
        while written < pending and (batch := self.impressions.drain(IMPRESSION_CHUNK)):
            try:
                repo.add_impressions(self.engine, batch)
            except Exception:
                logger.exception("could not write %d impressions", len(batch))
                break
            self.metrics.impressions_logged.inc(len(batch))
            written += len(batch)
            if len(batch) == IMPRESSION_CHUNK:
                time.sleep(IMPRESSION_PAUSE_S)
        return written

    def recent_online_metrics(self) -> list[dict[str, Any]]:
        """Online metrics of the last 7 days for the dashboard, recomputed at most every
        :data:`OVERVIEW_METRICS_MAX_AGE_S` seconds: the query reads every impression of the
        week, too much to repeat on each page view of a busy service."""
        cached = self._overview_metrics
        if cached is not None and time.monotonic() - cached[0] < OVERVIEW_METRICS_MAX_AGE_S:
            return cached[1]
        self.flush_impressions()
        rows = repo.online_metrics(
            self.engine,
            since=time.time() - 7 * 86_400,
            window_s=self.settings.followup_window_s,
            positive_events=self.settings.positive_events,
        )
        self._overview_metrics = (time.monotonic(), rows)
        return rows

    def sync(self) -> None:
        """One round of background upkeep (blocking; run it in a thread).

        A failing step does not stop the others. It is logged (with its traceback) when it
        starts failing or fails differently, again every :data:`SYNC_FAILURE_REMINDER` times
        in a row, and when it recovers; each failure counts in ``rekko_sync_failures``.
        """
        with self._sync_lock:
            steps: tuple[tuple[str, Callable[[], object]], ...] = (
                ("pointer", lambda: self.pool.refresh(self.engine)),
                ("follow", self.follow),
                ("events", self.sync_events),
                ("catalogue", lambda: self.catalogue.refresh(self.engine)),
                ("impressions", self.flush_impressions),
                ("retraining", self.maybe_retrain),
                ("abandoned jobs", self.jobs.reap_abandoned),
            )
            for name, step in steps:
                try:
                    step()
                except Exception as error:
                    self._step_failed(name, error)
                else:
                    failed = self._failing.pop(name, None)
                    if failed is not None:
                        logger.info("sync step %s works again after %d failures", name, failed[1])

    def _step_failed(self, name: str, error: Exception) -> None:
        self.sync_failures.labels(name).inc()
        signature = f"{type(error).__name__}: {error}"
        previous, count = self._failing.get(name, ("", 0))
        count = count + 1 if previous == signature else 1
        self._failing[name] = (signature, count)
        if count == 1:
            logger.exception("sync step %s failed", name)
        elif count % SYNC_FAILURE_REMINDER == 0:
            logger.error(
                "sync step %s still failing (%d times in a row): %s", name, count, signature
            )

    def served(self, user_id: str | None) -> ServedModel | None:
        return self.pool.choose(user_id)

    def logs_impressions_of(self, user_id: str) -> bool:
        """Whether this user's impressions are recorded (all or none of a user's, so that
        follow-ups are measured on whole users)."""
        settings = self.settings
        if not settings.log_impressions or settings.impression_sample_rate <= 0:
            return False
        rate = settings.impression_sample_rate
        return rate >= 1.0 or bucket(user_id, "impressions") < rate


def prepare_database(
    settings: ServeSettings, engine: Engine, registry: ModelRegistry, jobs: JobRunner
) -> None:
    """Bring the schema up to date, import the configured data, and make sure a model is
    active when data allows.

    With ``data``, its new rows are imported first (nothing when the source did not change),
    and a model is trained when none is active yet or the import stored new events. Without
    ``data``, on an empty database with ``bootstrap_demo``, the demo shop is loaded first.
    ``model_path`` is then registered (once) instead of training.
    Training happens here (synchronously); when another process is already doing it, this
    returns and the sync loop picks up its result.
    """
    upgrade_database(engine)
    repo.fail_stale_jobs(engine, older_than=time.time() - settings.training_timeout_s - 60)
    imported = import_configured_data(settings, engine, jobs.holder)
    demo = settings.data is None and settings.bootstrap_demo and registry.active is None
    if demo and repo.is_empty(engine):
        if not repo.try_acquire_lease(engine, "bootstrap", jobs.holder, 600):
            logger.info("another process is loading the demo data")
            return
        try:
            if repo.is_empty(engine):
                count = load_demo_data(engine, settings.demo_users, settings.demo_items)
                logger.info("empty database: loaded the demo shop (%d events)", count)
        finally:
            repo.release_lease(engine, "bootstrap", jobs.holder)
    if settings.model_path is not None and push_configured_model(settings, registry, jobs):
        return
    if registry.active is not None and not imported:
        return
    if repo.last_event_id(engine) == 0:
        logger.warning("no events stored and no model active: /ready stays 503 until trained")
        return
    trigger = "import" if imported else "bootstrap"
    logger.info("training %s on the stored events (%s)", settings.model, trigger)
    try:
        # Asked again under the lease: another process may have trained it meanwhile (an
        # import's new events are trained on whatever is active).
        jobs.run_now(
            trigger,
            settings.model,
            settings.model_params,
            still_due=(lambda: registry.active is None) if trigger == "bootstrap" else None,
        )
    except TrainingBusyError:
        logger.info("another process is training the first model")


def push_configured_model(
    settings: ServeSettings, registry: ModelRegistry, jobs: JobRunner
) -> bool:
    """Register ``settings.model_path`` as a version (once: a folder pushed before is
    recognised by its files) through a job and its quality gate; ``True`` when a job ran
    or had run. A folder that cannot be registered (its items are not in the catalogue, say)
    stops the start with the job's error."""
    from rekko.service.training import folder_hash, pushed_configuration

    assert settings.model_path is not None
    path = settings.model_path.resolve()
    digest = folder_hash(path)
    if any(info.model_hash == digest for info in registry.list()):
        return True
    algorithm, params = pushed_configuration(path)
    logger.info("registering the model in %s (%s) as a version", path, algorithm)
    try:
        job_id = jobs.start("push", algorithm, params, executor="thread", model_path=str(path))
    except TrainingBusyError:
        logger.info("another process is training; %s is not registered now", path)
        return False
    jobs.wait()
    job = repo.get_job(jobs.engine, job_id)
    if job is not None and job["status"] == "failed":
        raise DataError(f"--model-path {path}: {job['error']}")
    return True


def import_configured_data(settings: ServeSettings, engine: Engine, holder: str) -> int:
    """Import ``settings.data`` (once across processes: a lease); returns events stored.

    A followed table is taken in by its follower from the start (so that following goes on
    from the last row imported), with the feature files imported beside it.
    """
    data = settings.data
    if data is None:
        return 0
    from rekko.store.imports import Follower, import_data, import_features

    if not repo.try_acquire_lease(engine, "import", holder, 3600):
        logger.info("another process is importing the data")
        return 0
    try:
        logger.info("importing %s", data.interactions)
        if settings.follow is not None:
            import_features(engine, data)
            follower = Follower(data, settings.follow)
            try:
                stored = follower.catch_up(engine, settings.weights())
            finally:
                follower.close()
            logger.info("took %d new row(s) from %s", stored, follower.source)
            return stored
        return import_data(engine, data, event_weights=settings.weights()).stored
    finally:
        repo.release_lease(engine, "import", holder)
