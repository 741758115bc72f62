"""API keys: one for reads, one for posting events, one for administration.

A request presents its key in ``X-API-Key`` (or ``Authorization: Bearer <key>``). The admin
key opens every endpoint. A scope whose key is not configured is open, which the settings only
allow on a loopback address (:meth:`ServeSettings.check_exposure`).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import Request

from rekko.service.errors import ApiError
from rekko.service.settings import Scope, ServeSettings


def _presented(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return None


def _matches(presented: str, expected: str | None) -> bool:
    return expected is not None and hmac.compare_digest(
        presented.encode("utf-8"), expected.encode("utf-8")
    )


def authorize(settings: ServeSettings, scope: Scope, presented: str | None) -> None:
    """Raise 401/403 unless ``presented`` opens ``scope``."""
    expected = settings.key(scope)
    if expected is None:
        return
    if presented is None:
        raise ApiError(401, "unauthorized", f"this endpoint needs the {scope} key in X-API-Key")
    if _matches(presented, expected) or _matches(presented, settings.key("admin")):
        return
    known = any(_matches(presented, settings.key(other)) for other in ("read", "events"))
    if known:
        raise ApiError(403, "forbidden", f"this key does not allow {scope} endpoints")
    raise ApiError(401, "unauthorized", "unknown API key")


def require(scope: Scope) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency that checks the key for ``scope``."""

    # async: FastAPI would run a plain function in the thread pool, a costly hop per request.
    async def check(request: Request) -> None:
        authorize(request.app.state.service.settings, scope, _presented(request))

    check.__name__ = f"require_{scope}_key"
    return check
