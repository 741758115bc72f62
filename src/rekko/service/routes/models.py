"""Training jobs, model versions (activate, roll back, A/B split) and online metrics."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from rekko.errors import ModelError
from rekko.models.registry import available_models
from rekko.service.auth import require
from rekko.service.errors import ApiError, error_responses, invalid
from rekko.service.routes.common import service
from rekko.service.schemas import (
    JobOut,
    JobStarted,
    OnlineMetrics,
    PathId,
    PointerOut,
    PushRequest,
    SplitRequest,
    TrainRequest,
    VersionOut,
)
from rekko.service.state import ServiceState
from rekko.service.training import TrainingBusyError
from rekko.store import repository as repo
from rekko.store.registry import Pointer, VersionInfo

router = APIRouter(
    tags=["models"], dependencies=[Depends(require("admin"))], responses=error_responses(401, 403)
)


def _version_out(info: VersionInfo, pointer: Pointer) -> VersionOut:
    share = pointer.split.share if pointer.split and pointer.split.version == info.version else None
    return VersionOut(
        version=info.version,
        algorithm=info.algorithm,
        params=info.params,
        created_at=info.created_at,
        data_fingerprint=info.data_fingerprint,
        events_watermark=info.events_watermark,
        metrics=info.metrics,
        baseline_metrics=info.baseline_metrics,
        status="active" if info.version == pointer.active else info.status,
        reason=info.reason,
        active=info.version == pointer.active,
        split_share=share,
    )


def _pointer_out(pointer: Pointer) -> PointerOut:
    return PointerOut(
        active=pointer.active,
        history=pointer.history,
        split=pointer.split.model_dump() if pointer.split else None,
    )


@router.post(
    "/training/jobs",
    status_code=202,
    response_model=JobStarted,
    summary="Train",
    responses=error_responses(409, 422),
)
async def start_training(request: Request, body: TrainRequest | None = None) -> JobStarted:
    """Start a training job on the stored data (in the background). The new version is
    activated when it passes the quality gate (see ``GET /training/jobs/{job_id}``). While a
    job of the same algorithm and parameters is queued or running, this answers 409 with that
    job's ``job_id``."""
    state = service(request)
    body = body or TrainRequest.model_validate({})
    algorithm = body.algorithm or state.settings.model
    if algorithm not in available_models():
        known = ", ".join(available_models())
        raise invalid("body.algorithm", f"unknown model {algorithm!r} (available: {known})")
    params = (
        body.params
        if body.params is not None
        else (state.settings.model_params if algorithm == state.settings.model else {})
    )
    try:
        job_id = await run_in_threadpool(state.jobs.start, "api", algorithm, params, body.activate)
    except TrainingBusyError as error:
        extra = {"job_id": error.job_id} if error.job_id else None
        raise ApiError(409, "conflict", str(error), extra) from None
    return JobStarted(job_id=job_id, status_url=f"/training/jobs/{job_id}")


@router.post(
    "/models/push",
    status_code=202,
    response_model=JobStarted,
    summary="Register a model folder",
    responses=error_responses(409, 422),
)
async def push_model(request: Request, body: PushRequest) -> JobStarted:
    """Register a model folder trained elsewhere (``rekko train`` / ``tune``, on the server's
    disk) as a version, through a job like a training job: its items are checked against the
    catalogue, its configuration passes the same quality gate, and it is activated when it
    passes (``activate: auto``). The folder's model itself is served, not a refit."""
    from rekko.service.training import pushed_configuration

    state = service(request)
    path = Path(body.path)
    if "\x00" in body.path or not path.is_absolute():
        raise invalid("body.path", "give the model folder's absolute path on the server")
    try:
        algorithm, params = await run_in_threadpool(pushed_configuration, path)
    except (ModelError, OSError) as error:
        raise invalid("body.path", f"not a model folder written by rekko: {error}") from None
    try:
        job_id = await run_in_threadpool(
            lambda: state.jobs.start(
                "push", algorithm, params, body.activate, model_path=str(path.resolve())
            )
        )
    except TrainingBusyError as error:
        extra = {"job_id": error.job_id} if error.job_id else None
        raise ApiError(409, "conflict", str(error), extra) from None
    return JobStarted(job_id=job_id, status_url=f"/training/jobs/{job_id}")


@router.get(
    "/training/jobs",
    response_model=list[JobOut],
    summary="Recent training jobs",
    responses=error_responses(422),
)
async def list_jobs(
    request: Request, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[JobOut]:
    state = service(request)
    rows = await run_in_threadpool(repo.list_jobs, state.engine, limit)
    return [JobOut(**row) for row in rows]


@router.get(
    "/training/jobs/{job_id}",
    response_model=JobOut,
    summary="A training job",
    responses=error_responses(404, 422),
)
async def get_job(request: Request, job_id: PathId) -> JobOut:
    state = service(request)
    row = await run_in_threadpool(repo.get_job, state.engine, job_id)
    if row is None:
        raise ApiError(404, "not_found", f"unknown training job {job_id!r}")
    return JobOut(**row)


@router.get("/models", response_model=list[VersionOut], summary="Model versions")
async def list_versions(request: Request) -> list[VersionOut]:
    """Every saved version with its offline metrics, newest last; ``status`` is active,
    candidate (may be activated) or rejected (failed the quality gate; ``reason`` says why)."""
    state = service(request)
    pointer = state.registry.pointer()
    versions = await run_in_threadpool(state.registry.list)
    return [_version_out(info, pointer) for info in versions]


@router.get("/models/active", response_model=PointerOut, summary="The active version")
async def active_version(request: Request) -> PointerOut:
    return _pointer_out(service(request).registry.pointer())


@router.get(
    "/models/{version}",
    response_model=VersionOut,
    summary="A model version",
    responses=error_responses(404, 422),
)
async def get_version(request: Request, version: str) -> VersionOut:
    state = service(request)
    if not state.registry.exists(version):
        raise ApiError(404, "not_found", f"unknown model version {version!r}")
    return _version_out(state.registry.info(version), state.registry.pointer())


async def _servable(state: ServiceState, version: str, field: str) -> None:
    """Load ``version`` and let it answer a probe request before anything points at it."""
    try:
        await run_in_threadpool(state.pool.load, version, state.engine)
    except ModelError as error:
        raise invalid(field, str(error)) from None


async def _changed(state: ServiceState, pointer: Pointer) -> PointerOut:
    await run_in_threadpool(state.pool.refresh, state.engine)
    return _pointer_out(pointer)


@router.post(
    "/models/{version}/activate",
    response_model=PointerOut,
    summary="Activate a version",
    responses=error_responses(404, 422),
)
async def activate(request: Request, version: str) -> PointerOut:
    """Serve ``version`` from now on (loaded first, then swapped in: no request fails). A
    version that cannot be loaded or does not answer a probe request answers 422 and the
    active version stays."""
    state = service(request)
    if not state.registry.exists(version):
        raise ApiError(404, "not_found", f"unknown model version {version!r}")
    await _servable(state, version, "path.version")
    pointer = await run_in_threadpool(state.registry.activate, version)
    return await _changed(state, pointer)


@router.post(
    "/models/rollback",
    response_model=PointerOut,
    summary="Roll back",
    responses=error_responses(409, 422),
)
async def rollback(request: Request) -> PointerOut:
    """Re-activate the version that was active before the current one."""
    state = service(request)
    target = state.registry.rollback_target()
    if target is not None:
        await _servable(state, target, "request")
    try:
        pointer = await run_in_threadpool(state.registry.rollback)
    except ModelError as error:
        raise ApiError(409, "conflict", str(error)) from None
    return await _changed(state, pointer)


@router.put(
    "/models/split",
    response_model=PointerOut,
    summary="Start an A/B split",
    responses=error_responses(404, 409, 422),
)
async def set_split(request: Request, body: SplitRequest) -> PointerOut:
    """Serve ``share`` of users (chosen by a hash of their id, so each user always sees the
    same arm) from ``version``; everyone else gets the active version. Compare the arms in
    ``GET /online-metrics``."""
    state = service(request)
    if not state.registry.exists(body.version):
        raise ApiError(404, "not_found", f"unknown model version {body.version!r}")
    await _servable(state, body.version, "body.version")
    try:
        pointer = await run_in_threadpool(state.registry.set_split, body.version, body.share)
    except ModelError as error:
        raise ApiError(409, "conflict", str(error)) from None
    return await _changed(state, pointer)


@router.delete("/models/split", response_model=PointerOut, summary="End the A/B split")
async def clear_split(request: Request) -> PointerOut:
    state = service(request)
    pointer = await run_in_threadpool(state.registry.clear_split)
    return await _changed(state, pointer)


@router.get(
    "/online-metrics",
    response_model=OnlineMetrics,
    summary="Online evaluation",
    responses=error_responses(422),
)
async def online_metrics(
    request: Request,
    lookback_s: Annotated[
        float, Query(gt=0, description="Impressions served in the last N seconds.")
    ] = 7 * 86_400.0,
) -> OnlineMetrics:
    """Per model version: lists served, items shown, and how many of those items the same
    user then interacted with positively within ``followup_window_s`` (``follow_rate``)."""
    state = service(request)
    await run_in_threadpool(state.flush_impressions)
    since = time.time() - lookback_s
    window = state.settings.followup_window_s
    rows = await run_in_threadpool(
        lambda: repo.online_metrics(
            state.engine,
            since=since,
            window_s=window,
            positive_events=state.settings.positive_events,
        )
    )
    return OnlineMetrics(since=since, window_s=window, versions=rows)  # type: ignore[arg-type]
