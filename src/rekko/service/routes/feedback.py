"""Feedback events: stored durably, then folded into the served models at once."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from rekko.data.dataset import MAX_VALUE
from rekko.service.auth import require
from rekko.service.errors import error_responses, invalid
from rekko.service.routes.common import service
from rekko.service.schemas import EventBatch, EventsAccepted
from rekko.store import repository as repo

router = APIRouter(
    tags=["feedback"],
    dependencies=[Depends(require("events"))],
    responses=error_responses(401, 403),
)


@router.post(
    "/events",
    response_model=EventsAccepted,
    summary="Store a batch of events",
    responses=error_responses(422),
)
async def post_events(request: Request, batch: EventBatch) -> EventsAccepted:
    """Store events in one transaction and answer only once they are committed.

    An event whose ``event_id`` was stored before is not stored again (``duplicates``).
    The events then change the users' recommendations at once: their items count as seen,
    and models that fold users in update those users (``applied``).
    """
    state = service(request)
    settings = state.settings
    if len(batch.events) > settings.max_batch:
        raise invalid("body.events", f"at most {settings.max_batch} events per call")
    weights = state.weights
    now = time.time()
    new = []
    for position, event in enumerate(batch.events):
        if weights.default is None and event.type not in weights.weights:
            known = ", ".join(sorted(weights.weights))
            raise invalid(
                f"body.events.{position}.type",
                f"unknown event type {event.type!r} (known: {known})",
            )
        weight = weights.weights.get(event.type, weights.default or 0.0)
        if event.value * weight > MAX_VALUE:
            raise invalid(
                f"body.events.{position}.value",
                f"value x weight of {event.type!r} ({weight:g}) must be at most {MAX_VALUE:g}",
            )
        new.append(
            repo.NewEvent(
                user_id=event.user_id,
                item_id=event.item_id,
                event_type=event.type,
                value=event.value,
                occurred_at=event.occurred_at(now),
                event_id=event.event_id,
            )
        )
    result = await run_in_threadpool(repo.add_events, state.engine, new)
    state.metrics.events_stored.inc(result.stored)
    state.metrics.events_duplicate.inc(result.duplicates)
    applied = (
        await run_in_threadpool(lambda: state.sync_events(serving_only=True))
        if result.stored
        else 0
    )
    return EventsAccepted(
        received=len(new), stored=result.stored, duplicates=result.duplicates, applied=applied
    )
