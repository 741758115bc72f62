"""``serve(settings)``: run the service with uvicorn (what ``rekko serve`` calls).

With one worker the app object runs in this process. With several, the settings travel to the
worker processes in an environment variable and each builds its own app; the database is
migrated and, on first start, the demo model trained here first, so the workers start ready.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any

from rekko.service.settings import SCOPES, ServeSettings

if TYPE_CHECKING:
    import uvicorn

logger = logging.getLogger(__name__)


def settings_json(settings: ServeSettings) -> str:
    """The settings as JSON with the keys' real values (for worker processes only)."""
    values: dict[str, Any] = settings.model_dump(mode="json")
    for scope in SCOPES:
        values[f"{scope}_key"] = settings.key(scope)
    return json.dumps(values)


def prepare(settings: ServeSettings) -> None:
    """Migrate, and on first start load the demo data and train the first model (before the
    workers start, so that they start ready). Loads no model into this process."""
    from rekko.service.state import ServiceState, prepare_database

    state = ServiceState(settings)
    try:
        prepare_database(settings, state.engine, state.registry, state.jobs)
    finally:
        state.close()


def uvicorn_options(settings: ServeSettings) -> dict[str, Any]:
    """Keyword arguments for :func:`uvicorn.run` / :class:`uvicorn.Config` from settings."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": False,  # per-request log lines cost more than the request at 1,000/s
        "proxy_headers": False,
        "server_header": False,
        "timeout_keep_alive": 15,
    }


def single_worker_server(settings: ServeSettings) -> uvicorn.Server:
    """A uvicorn server running one app in this process (``server.run()`` blocks;
    ``server.should_exit = True`` stops it)."""
    import uvicorn

    from rekko.service.app import create_app

    settings.check_exposure()
    return uvicorn.Server(
        uvicorn.Config(create_app(settings, freeze_gc=True), **uvicorn_options(settings))
    )


def serve(settings: ServeSettings) -> None:
    """Run the HTTP service until interrupted.

    Raises :class:`~rekko.service.settings.SettingsError` before binding when ``host`` is not
    a loopback address and a key is missing, short or a placeholder.
    """
    settings.check_exposure()
    import uvicorn

    from rekko.service.app import SETTINGS_ENV

    if settings.workers == 1:
        single_worker_server(settings).run()
        return
    prepare(settings)
    os.environ[SETTINGS_ENV] = settings_json(settings)
    uvicorn.run(
        "rekko.service.app:app_from_environment",
        factory=True,
        workers=settings.workers,
        **uvicorn_options(settings),
    )
