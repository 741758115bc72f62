"""``python -m rekko.service``: serve with settings from ``REKKO_*`` variables (and
``REKKO_CONFIG``, a ``rekko.toml`` whose ``[serve]`` table is read first)."""

from __future__ import annotations

import logging
import os
import sys

from rekko.service.runner import serve
from rekko.service.settings import SettingsError, load_settings


def main() -> None:
    try:
        settings = load_settings(os.environ.get("REKKO_CONFIG"))
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        logging.getLogger("alembic").setLevel(logging.WARNING)
        serve(settings)
    except SettingsError as error:
        sys.exit(f"rekko: {error}")


if __name__ == "__main__":
    main()
