"""The web dashboard served by ``rekko serve`` under ``/dashboard`` (read key required).

Server-rendered pages with one stylesheet and one small script, both shipped in ``static/``:
the overview, users, items, "Try it", online metrics over time, training jobs and model
versions (with the admin key: train, activate, roll back). Without a key the pages answer a
page that asks for it; the key is then kept in a cookie.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from rekko.service.dashboard.keys import DashboardKeyError, key_page, key_router
from rekko.service.dashboard.operations import router as operations_router
from rekko.service.dashboard.pages import router

STATIC_DIR = Path(__file__).parent / "static"


async def _key_needed(request: Request, error: Exception) -> Response:
    assert isinstance(error, DashboardKeyError)
    return key_page(request, error)


def install_dashboard(app: FastAPI) -> None:
    """Add the dashboard's pages and static files to ``app``."""
    app.include_router(key_router)
    app.include_router(router)
    app.include_router(operations_router)
    app.add_exception_handler(DashboardKeyError, _key_needed)
    app.mount("/dashboard/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static")


__all__ = ["STATIC_DIR", "install_dashboard", "router"]
