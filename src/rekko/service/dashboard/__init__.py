"""The web dashboard served by ``rekko serve`` under ``/dashboard`` (read key required).

Server-rendered pages with one stylesheet and one small script, both shipped in ``static/``.
Open ``/dashboard?key=<read key>`` in a browser: the key is then kept in a cookie.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from rekko.service.dashboard.pages import router

STATIC_DIR = Path(__file__).parent / "static"


def install_dashboard(app: FastAPI) -> None:
    """Add the dashboard's pages and static files to ``app``."""
    app.include_router(router)
    app.mount("/dashboard/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static")


__all__ = ["STATIC_DIR", "install_dashboard", "router"]
