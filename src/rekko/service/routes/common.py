"""Helpers shared by the route modules."""

from __future__ import annotations

import itertools
import json
import math
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from rekko.constraints import Constraint, parse_constraints
from rekko.errors import DataError, ModelError
from rekko.service.errors import ApiError, invalid
from rekko.service.schemas import Parameters
from rekko.service.serving import PreferenceError, Ranked, ServedModel
from rekko.service.state import ServiceState

P = TypeVar("P", bound=Parameters)


def parameters(request: Request, model: type[P]) -> P:
    """The path and query parameters of ``request`` as ``model``, in one validation.

    The hot GET endpoints read their parameters this way rather than one by one through the
    framework's dependency resolution, which cost about as much per request as ranking one
    user. Errors are the framework's own (``query.k``, ``path.user_id``), answered as every
    other 422.
    """
    values: dict[str, Any] = dict(request.query_params)
    values.update(request.path_params)
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise RequestValidationError(
            [
                {**item, "loc": ("path" if item["loc"][0] in model.path else "query", *item["loc"])}
                for item in error.errors(include_url=False)
            ]
        ) from None


def documented(model: type[Parameters]) -> dict[str, Any]:
    """The OpenAPI parameters of ``model`` (for ``openapi_extra`` of the route that reads it
    with :func:`parameters`), so that the document and the validation are one definition."""
    schema = model.model_json_schema(mode="validation")
    required = set(schema.get("required", ()))
    documented_parameters = []
    for name, field in schema["properties"].items():
        where = "path" if name in model.path else "query"
        entry: dict[str, Any] = {
            "name": name,
            "in": where,
            "required": where == "path" or name in required,
            "schema": {key: value for key, value in field.items() if key != "description"},
        }
        if "description" in field:
            entry["description"] = field["description"]
        documented_parameters.append(entry)
    return {"parameters": documented_parameters}


_REQUEST_PREFIX = secrets.token_hex(8)
_REQUEST_COUNTER = itertools.count(1)


def _new_request_prefix() -> None:  # a forked worker must not repeat its parent's ids
    global _REQUEST_PREFIX
    _REQUEST_PREFIX = secrets.token_hex(8)


os.register_at_fork(after_in_child=_new_request_prefix)


def next_request_id() -> str:
    """A request id unique across processes and restarts: 16 random hex digits drawn when
    the process starts, then a counter in hex (no system call per request; at most 32
    characters, the impressions column, for 2^64 requests)."""
    return f"{_REQUEST_PREFIX}{next(_REQUEST_COUNTER):x}"


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
    request_id = next_request_id()
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
    state.metrics.served_list(kind, ranked.version, ranked.fallback or "none")
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
