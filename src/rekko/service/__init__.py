"""The recommendation service: HTTP API, feedback loop and model versions.

* :func:`create_app` builds the FastAPI app from :class:`ServeSettings` (nothing happens at
  import time);
* :func:`serve` runs it with uvicorn (``rekko serve``);
* :func:`load_settings` reads ``rekko.toml`` ``[serve]``, ``REKKO_*`` variables and flags.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from rekko.service.settings import ServeSettings, SettingsError, load_settings

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["ServeSettings", "SettingsError", "create_app", "load_settings", "serve"]


#: Modules the service needs beyond rekko's core dependencies (the ``serve`` extra).
SERVICE_MODULES = ("fastapi", "uvicorn", "alembic", "prometheus_client")


def _require_service_modules() -> None:
    missing = [name for name in SERVICE_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"the rekko service needs {', '.join(missing)}: pip install 'rekko[serve]'"
        )


def create_app(settings: ServeSettings | None = None, *, freeze_gc: bool = False) -> FastAPI:
    """See :func:`rekko.service.app.create_app`."""
    _require_service_modules()
    from rekko.service.app import create_app as factory

    return factory(settings, freeze_gc=freeze_gc)


def serve(settings: ServeSettings) -> None:
    """See :func:`rekko.service.runner.serve`."""
    _require_service_modules()
    from rekko.service.runner import serve as run

    run(settings)
