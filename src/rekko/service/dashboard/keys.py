"""API keys in the dashboard: the read key opens its pages, the admin key its buttons.

A browser gives its key once, in the form of the "key needed" page (or as ``?key=`` in the
address); the dashboard keeps it in an HTTP-only, same-site cookie. Buttons that change the
service (train, activate, roll back) post forms that need the admin key in that cookie, and
only from the dashboard's own pages (a same-site cookie and an ``Origin`` check).
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from rekko.service.auth import _presented, authorize
from rekko.service.dashboard.html import page, text
from rekko.service.errors import ApiError
from rekko.service.settings import Scope

KEY_COOKIE = "rekko_dashboard_key"
MAX_FORM_BYTES = 4096


class DashboardKeyError(Exception):
    """A dashboard page or button was opened without the key it needs."""

    def __init__(self, status: int, message: str, scope: Scope) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.scope = scope


def presented_key(request: Request) -> str | None:
    """The key from ``X-API-Key``, a ``key`` query parameter or the dashboard cookie."""
    return _presented(request) or request.query_params.get("key") or request.cookies.get(KEY_COOKIE)


def check_key(request: Request, scope: Scope) -> None:
    """Raise :class:`DashboardKeyError` unless the presented key opens ``scope``."""
    try:
        authorize(request.app.state.service.settings, scope, presented_key(request))
    except ApiError as error:
        raise DashboardKeyError(error.status, str(error.detail), scope) from None


def has_key(request: Request, scope: Scope) -> bool:
    try:
        check_key(request, scope)
    except DashboardKeyError:
        return False
    return True


async def require_read_key(request: Request) -> None:
    check_key(request, "read")


def check_same_origin(request: Request) -> None:
    """Forms that change the service come from the dashboard's own pages only."""
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise DashboardKeyError(403, "this form may only be sent from the dashboard", "admin")


async def form_fields(request: Request) -> dict[str, str]:
    """The fields of a posted HTML form (``application/x-www-form-urlencoded``)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ApiError(413, "payload_too_large", "a dashboard form is at most 4 KiB")
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {name: values[-1] for name, values in fields.items()}


def _safe_next(target: str) -> str:
    """Only pages of the dashboard (no other site) after the key form."""
    return target if target.startswith("/dashboard") and "//" not in target else "/dashboard"


def key_page(request: Request, error: DashboardKeyError) -> Response:
    """An HTML page saying which key is needed and taking it (status 401 or 403)."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        target = request.headers.get("referer", "/dashboard").partition(request.url.netloc)[2]
    scope = "admin" if error.scope == "admin" else "read (or admin)"
    body = (
        f'<section class="card" id="key-needed"><h2>{text(error.message)}</h2>'
        f"<p>This page needs the service's <b>{scope}</b> key (the keys are set with "
        "<code>REKKO_READ_KEY</code> and <code>REKKO_ADMIN_KEY</code>). Enter it here; the "
        "browser keeps it in a cookie "
        "for the next pages (or open <code>/dashboard?key=&lt;key&gt;</code>).</p>"
        '<form method="post" action="/dashboard/key" class="key">'
        f'<input type="hidden" name="next" value="{text(_safe_next(target))}">'
        '<label>API key <input type="password" name="key" autocomplete="current-password" '
        'required></label> <button type="submit">Open</button></form></section>'
    )
    return HTMLResponse(page("Key needed", body), status_code=error.status)


key_router = APIRouter(prefix="/dashboard", include_in_schema=False)


@key_router.post("/key")
async def take_key(request: Request) -> Response:
    """Keep the key from the "key needed" form in the cookie, then go back to the page."""
    fields = await form_fields(request)
    key = fields.get("key", "").strip()
    target = _safe_next(fields.get("next", "/dashboard"))
    try:
        authorize(request.app.state.service.settings, "read", key or None)
    except ApiError as error:
        return key_page(request, DashboardKeyError(error.status, str(error.detail), "read"))
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(KEY_COOKIE, key, httponly=True, samesite="strict")
    return response


def set_key_cookie(request: Request, response: Response) -> Response:
    """A key given as ``?key=`` is kept in the cookie for the next pages."""
    key = request.query_params.get("key")
    if key:
        response.set_cookie(KEY_COOKIE, key, httponly=True, samesite="strict")
    return response


__all__ = ["KEY_COOKIE", "DashboardKeyError", "check_key", "key_router"]
