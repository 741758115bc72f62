"""The app factory: :func:`create_app` builds a fresh app from settings (nothing at import).

On start-up (the ASGI lifespan) the app migrates the database, loads the demo data and trains
when the database is empty (see ``bootstrap_demo``), loads the active model version and starts
the background sync loop; on shutdown it writes buffered impressions and closes the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from rekko import __version__
from rekko.service.dashboard import install_dashboard
from rekko.service.errors import document_errors, install_error_handlers
from rekko.service.metrics import ASGIApp, Message, MetricsMiddleware, Receive, Scope, Send
from rekko.service.routes import catalogue, feedback, models, recommend, system
from rekko.service.settings import ServeSettings, load_settings
from rekko.service.state import ServiceState

logger = logging.getLogger(__name__)

#: Environment variable through which :func:`rekko.service.runner.serve` hands the settings to
#: worker processes (JSON, keys included: it never leaves the machine).
SETTINGS_ENV = "REKKO_SERVE_SETTINGS_JSON"

DESCRIPTION = """
Recommendations, feedback, catalogue, training and model versions for **rekko**.

Keys go in the `X-API-Key` header: the *read* key for recommendations and look-ups, the
*events* key for `POST /events`, the *admin* key for everything (catalogue, training, versions).
Errors are `{"error": code, "detail": ...}`; validation errors (422) list each `field` with its
`reason`.
"""


#: Paths that admission control never refuses: probes must answer however busy the server is.
UNGUARDED = frozenset({"/health", "/ready", "/metrics"})


class AdmissionMiddleware:
    """Answers 503 with ``Retry-After`` to requests beyond ``limit`` in flight in this worker,
    at once, instead of letting them queue behind the others.

    A request counts from when the event loop first runs it until its answer is sent. It
    yields to the loop once after counting itself, so that requests that arrived together are
    all counted before any of them runs (a request that ranks without awaiting would otherwise
    finish before the next one is counted, and the queue would stay invisible). One integer,
    no lock: everything here runs on the event loop's thread.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0
        body = json.dumps(
            {"error": "overloaded", "detail": f"more than {limit} requests in flight; retry"}
        ).encode()
        self._start = {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
            ],
        }
        self._body = {"type": "http.response.body", "body": body}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNGUARDED:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            await send(self._start)
            await send(self._body)
            return
        self.in_flight += 1
        try:
            await asyncio.sleep(0)
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class _BodyTooLargeError(Exception):
    pass


class BodyLimitMiddleware:
    """Answers 413 to request bodies over ``max_bytes``: at once from ``Content-Length``, or
    while reading a body sent without one."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = None
        chunked = False
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
        if length is not None:
            try:
                too_large = int(length) > self.max_bytes
            except ValueError:
                too_large = False
            if too_large:
                await self._reject(send)
                return
            await self.app(scope, receive, send)
            return
        if not chunked:  # no body at all (a GET): nothing to count
            await self.app(scope, receive, send)
            return
        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # the app's answer to the aborted read is replaced by the 413
            started = True
            await send(message)

        with contextlib.suppress(_BodyTooLargeError):
            await self.app(scope, counting_receive, guarded_send)
        if exceeded and not started:
            await self._reject(send)

    async def _reject(self, send: Send) -> None:
        body = json.dumps(
            {"error": "payload_too_large", "detail": f"request body over {self.max_bytes} bytes"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _sync_loop(state: ServiceState) -> None:
    interval = state.settings.sync_interval_s
    while True:
        await asyncio.sleep(interval)
        try:
            await run_in_threadpool(state.sync)
        except Exception:
            logger.exception("background sync failed")


def create_app(settings: ServeSettings | None = None, *, freeze_gc: bool = False) -> FastAPI:
    """A new app for ``settings`` (default: :func:`load_settings` from the environment).

    ``freeze_gc`` (for a server process that runs only this app) moves everything alive after
    start-up out of the garbage collector's full passes, which would otherwise stall requests.

    Raises :class:`~rekko.service.settings.SettingsError` for a non-loopback ``host``
    without proper keys.
    """
    settings = settings if settings is not None else load_settings()
    settings.check_exposure()
    state = ServiceState(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(state.prepare)
        if freeze_gc:
            gc.collect()
            gc.freeze()
        task = asyncio.create_task(_sync_loop(state))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await run_in_threadpool(state.close)

    app = FastAPI(
        title="rekko",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs" if settings.docs and _swagger_ui_assets() is None else None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs else None,
    )
    app.state.service = state
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(AdmissionMiddleware, limit=settings.max_in_flight)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    # The hot routes first: a request is matched against the routes in this order.
    for module in (recommend, feedback, system, catalogue, models):
        app.include_router(module.router)
    install_dashboard(app)
    if settings.docs:
        _install_offline_docs(app)
    framework_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document_errors(framework_openapi(), UNGUARDED)
        return framework_openapi()  # the framework's copy, now amended and cached

    app.openapi = openapi  # type: ignore[method-assign]
    return app


#: Where the Swagger UI files of ``/docs`` are served from.
DOCS_ASSETS = "/docs/assets"


def _swagger_ui_assets() -> Path | None:
    """The folder of Swagger UI's files (``swagger-ui-bundle.js``, ``swagger-ui.css``), shipped
    in the ``fastapi-offline`` package of the ``serve`` extra; ``None`` where it is missing."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def _install_offline_docs(app: FastAPI) -> None:
    """``/docs`` with Swagger UI from installed files, so that it also works offline.

    Without ``fastapi-offline`` (an incomplete install) FastAPI's own page stays, which loads
    Swagger UI from a CDN; a warning says what to install.
    """
    assets = _swagger_ui_assets()
    if assets is None:
        logger.warning(
            "/docs loads Swagger UI from a CDN (blank offline): pip install 'rekko[serve]'"
        )
        return
    openapi_url = app.openapi_url
    redirect_url = app.swagger_ui_oauth2_redirect_url
    assert openapi_url is not None and redirect_url is not None
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=root + redirect_url,
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    async def oauth2_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.add_route("/docs", docs, include_in_schema=False)
    app.add_route(redirect_url, oauth2_redirect, include_in_schema=False)


def app_from_environment() -> FastAPI:
    """Factory for uvicorn worker processes: settings from :data:`SETTINGS_ENV`, else from
    the ``REKKO_*`` variables."""
    text = os.environ.get(SETTINGS_ENV)
    settings = ServeSettings.model_validate_json(text) if text else load_settings()
    return create_app(settings, freeze_gc=True)
