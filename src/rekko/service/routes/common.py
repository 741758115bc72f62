"""Helpers shared by the route modules."""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from rekko.constraints import Constraint, parse_constraints
from rekko.errors import DataError, ModelError
from rekko.service.errors import ApiError, invalid
from rekko.service.serving import PreferenceError, Ranked, ServedModel
from rekko.service.state import ServiceState


def service(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


def check_k(state: ServiceState, k: int, field: str) -> None:
    if k > state.settings.max_k:
        raise invalid(field, f"k must be at most {state.settings.max_k}")


def constraints(filters: Any, field: str) -> Constraint | None:
    """Knowledge constraints from a JSON object (or its text, from a query string)."""
    if filters is None or filters == "":
        return None
    if isinstance(filters, str):
        try:
            filters = json.loads(filters)
        except json.JSONDecodeError as error:
            raise invalid(field, f"must be a JSON object ({error.msg})") from None
    if not isinstance(filters, dict):
        raise invalid(field, "must be a JSON object of feature -> condition")
    if not filters:
        return None
    try:
        return parse_constraints(filters)
    except DataError as error:
        raise invalid(field, str(error)) from None


@contextmanager
def blame_filters(constraint: Constraint | None, field: str) -> Iterator[None]:
    """Report data errors raised while applying filters (unknown feature, a model without
    features) as a 422 on the filters field."""
    try:
        yield
    except PreferenceError as error:
        raise invalid("body.preferences", str(error)) from None
    except (DataError, ModelError) as error:
        if constraint is None:
            raise
        raise invalid(field, str(error)) from None


def split_list(text: str | None) -> list[str]:
    """``"a,b, c"`` -> ``["a", "b", "c"]``."""
    if not text:
        return []
    return [part.strip() for part in text.split(",") if part.strip()]


async def pick_model(
    state: ServiceState, user_id: str | None, version: str | None, field: str = "query.version"
) -> ServedModel:
    """The version named in the request, else the user's A/B arm or the active version."""
    if version:
        served = state.pool.get(version)
        if served is None:
            try:
                known = state.registry.exists(version)
            except (DataError, ModelError) as error:  # not a version name at all
                raise invalid(field, str(error)) from None
            if not known:
                raise ApiError(404, "not_found", f"unknown model version {version!r}")
            served = await run_in_threadpool(state.pool.load, version, state.engine)
        return served
    served = state.pool.choose(user_id)
    if served is None:
        raise ApiError(
            503,
            "unavailable",
            "no model version is active yet: store events and start a training job",
        )
    return served


def ranked_response(
    state: ServiceState,
    ranked: Ranked,
    *,
    kind: str,
    fields: Sequence[str],
    head: dict[str, Any],
    log_user: str | None,
) -> Response:
    """The JSON response for a ranked list; logs impressions and counts it."""
    request_id = secrets.token_hex(8)
    catalogue = state.catalogue
    items = [
        {
            "item_id": item_id,
            "rank": rank,
            "score": score if math.isfinite(score) else 0.0,
            "fields": catalogue.fields(item_id, fields) if fields else None,
        }
        for rank, (item_id, score) in enumerate(
            zip(ranked.item_ids, ranked.scores, strict=True), start=1
        )
    ]
    if log_user is not None and items and state.logs_impressions_of(log_user):
        state.impressions.add(log_user, ranked.version, ranked.item_ids, request_id)
    state.metrics.recommendations.labels(kind, ranked.version, ranked.fallback or "none").inc()
    body = {
        **head,
        "model_version": ranked.version,
        "fallback": ranked.fallback,
        "request_id": request_id,
        "items": items,
    }
    if kind != "similar":
        body["note"] = ranked.note
    return Response(json.dumps(body, default=str), media_type="application/json")
