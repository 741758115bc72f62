"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from rekko.service.routes.common import service
from rekko.service.schemas import Health

router = APIRouter(tags=["system"])


@router.get("/health", response_model=Health, summary="Liveness")
async def health(request: Request) -> Health:
    """The process is up (it may still be loading its first model: ``model_version`` is
    then null); ``model_version`` names the version served, as ``/ready`` does."""
    active = service(request).pool.active
    return Health(status="ok", model_version=active.version if active is not None else None)


@router.get(
    "/ready",
    response_model=Health,
    responses={503: {"model": Health, "description": "No model loaded yet"}},
    summary="Readiness",
)
async def ready(request: Request) -> Response:
    """200 once a model version is loaded and served, 503 before."""
    active = service(request).pool.active
    if active is None:
        return JSONResponse({"status": "not ready", "model_version": None}, status_code=503)
    return JSONResponse({"status": "ready", "model_version": active.version})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    state = service(request)
    return Response(state.metrics.render(), media_type=state.metrics.content_type)
