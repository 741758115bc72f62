"""Spark sessions: one for a given master, and one shared local session for in-memory fits.

PySpark is imported here and only when a session is asked for, so ``import rekko.spark`` works
on machines without it (the ``spark`` extra installs it). Under ``spark-submit`` the session
that the launcher configured is reused as is: ``getOrCreate`` returns it, and settings passed
here that cannot change on a running session are ignored by Spark (it logs a warning).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Mapping
from typing import Any

from rekko.errors import ModelError

logger = logging.getLogger(__name__)

#: Install hint used by every error about a missing PySpark.
INSTALL_HINT = "install it with: pip install 'rekko[spark]' (and a Java 17 or 21 runtime)"
#: Environment variable naming the master of the shared local session (``local[2]``...).
MASTER_ENV = "REKKO_SPARK_MASTER"

_lock = threading.Lock()
_shared: Any = None


def require_pyspark(what: str) -> None:
    """Raise a :class:`ModelError` naming ``what`` when PySpark cannot be imported."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise ModelError(f"{what} needs PySpark, which is not installed: {INSTALL_HINT}") from None


def _local_threads(master: str) -> int | None:
    """Worker threads of a ``local[N]`` / ``local[*]`` / ``local`` master, else ``None``."""
    if master == "local":
        return 1
    if master.startswith("local[") and master.endswith("]"):
        inner = master[len("local[") : -1].split(",")[0]
        return (os.cpu_count() or 1) if inner == "*" else int(inner)
    return None


def default_config(master: str) -> dict[str, str]:
    """Settings rekko uses unless told otherwise: quiet, no web UI, Arrow transfers.

    On a local master, shuffles get one partition per thread instead of Spark's 200, which
    otherwise dominate small jobs.
    """
    config = {
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
    }
    threads = _local_threads(master)
    if threads is not None:
        config["spark.ui.enabled"] = "false"
        config["spark.sql.shuffle.partitions"] = str(max(threads, 1))
        config["spark.default.parallelism"] = str(max(threads, 1))
    return config


def spark_session(
    master: str | None = "local[*]",
    *,
    app_name: str = "rekko",
    config: Mapping[str, str] | None = None,
    ship_rekko: bool = True,
) -> Any:
    """A ``SparkSession`` on ``master`` (``None``: whatever ``spark-submit`` configured).

    ``config`` adds or overrides Spark settings (``{"spark.executor.memory": "8g"}``). On a
    cluster master (not ``local``), ``ship_rekko`` adds a zip of the running rekko to the
    executors' Python path (:func:`rekko.spark.package.ship_package`), so that executors with
    rekko's dependencies but without rekko can run its Python code.
    """
    require_pyspark("Spark training")
    from pyspark.sql import SparkSession

    if master is not None and _local_threads(master) is not None:
        # Local Python workers must be this interpreter (with rekko and NumPy), not whatever
        # "python3" is first on PATH, which is Spark's default.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    settings = default_config(master or "")
    settings.update(config or {})
    if master is not None:
        builder = builder.master(master)
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    running_master = str(session.sparkContext.master)
    if _local_threads(running_master) is not None:
        # Local runs print to the user's terminal: errors only. A cluster's logging is left
        # as its operators configured it.
        session.sparkContext.setLogLevel("ERROR")
        if session.sparkContext.getCheckpointDir() is None:
            # ALS cuts its lineage with checkpoints (long lineages overflow the JVM stack).
            folder = tempfile.mkdtemp(prefix="rekko-spark-checkpoints-")
            session.sparkContext.setCheckpointDir(folder)
    elif ship_rekko:
        from rekko.spark.package import ship_package

        ship_package(session)
    return session


def shared_local_session() -> Any:
    """The process-wide local session used by ``spark-als`` fits on an in-memory data set.

    Created on first use (it takes seconds: a JVM starts) and stopped at exit. Its master is
    ``$REKKO_SPARK_MASTER`` or ``local[N]`` with N the number of cores, at most 4.
    """
    global _shared
    with _lock:
        if _shared is None or _shared.sparkContext._jsc is None:
            master = os.environ.get(MASTER_ENV) or f"local[{min(os.cpu_count() or 1, 4)}]"
            logger.info("starting a local Spark session on %s", master)
            _shared = spark_session(master, app_name="rekko-local")
            atexit.register(_stop_shared)
        return _shared


def _stop_shared() -> None:
    global _shared
    with _lock:
        if _shared is not None:
            try:
                _shared.stop()
            except Exception:  # interpreter shutdown: nothing left to report to
                logger.debug("stopping the shared Spark session failed", exc_info=True)
            _shared = None
