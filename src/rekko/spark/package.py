"""rekko's own code as a zip for Spark executors (``--py-files``, ``SparkContext.addPyFile``).

Batch recommendations run Python on the executors, which must import rekko. When they already
have its dependencies (NumPy, pandas, SciPy, PyArrow, pydantic: compiled packages that a zip
cannot carry) but not rekko itself, or another version of it, the zip of the package that the
driver imports is enough: :func:`ship_package` adds it to a session, and
:func:`rekko.spark.spark_session` does so by itself on a cluster master. For ``spark-submit``:

    python -m rekko.spark.package rekko.zip
    spark-submit --py-files rekko.zip ... driver.py
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import logging
import shutil
import sys
import tempfile
import threading
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import rekko
from rekko.errors import ModelError

logger = logging.getLogger(__name__)

#: A fixed time stamp for every entry, so that the same sources give the same bytes.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

_lock = threading.Lock()
_shipped: dict[str, Path] = {}
_folder: Path | None = None


def package_root() -> Path | None:
    """The folder of the ``rekko`` package this process runs, or ``None`` inside a zip."""
    root = Path(rekko.__file__).resolve().parent
    return root if root.is_dir() else None


def package_zip(output: str | Path) -> Path:
    """Write the running ``rekko`` package (sources and data files) to the zip ``output``.

    Compiled caches are left out and entries are sorted with a fixed time stamp: the same
    sources give the same bytes.
    """
    root = package_root()
    if root is None:
        raise ModelError(
            f"rekko runs from {rekko.__file__}, not from a folder: ship the zip it came from"
        )
    files = sorted(
        path
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )
    target = Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            entry = zipfile.ZipInfo(f"rekko/{path.relative_to(root).as_posix()}", _ZIP_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, path.read_bytes())
    logger.info("wrote %d files of rekko %s to %s", len(files), rekko.__version__, target)
    return target


def ship_package(session: Any) -> Path | None:
    """Add a zip of the running rekko to ``session``'s executors' Python path.

    Done once per application; returns the zip, or ``None`` when rekko itself runs from a zip
    (it came with ``--py-files`` and the executors have it already).
    """
    global _folder
    context = session.sparkContext
    application = str(context.applicationId)
    with _lock:
        if application in _shipped:
            return _shipped[application]
        if package_root() is None:
            logger.info("rekko runs from a zip: not shipping it again")
            return None
        if _folder is None:
            _folder = Path(tempfile.mkdtemp(prefix="rekko-spark-package-"))
            atexit.register(shutil.rmtree, _folder, ignore_errors=True)
        draft = package_zip(_folder / "rekko.zip.part")
        # Named by its content: Spark refuses two different files of the same name, such as a
        # rekko.zip the user shipped with --py-files.
        digest = hashlib.sha256(draft.read_bytes()).hexdigest()[:12]
        path = draft.replace(_folder / f"rekko-{rekko.__version__}-{digest}.zip")
        context.addPyFile(str(path))
        _shipped[application] = path
    logger.info("shipped %s to the executors of %s", path.name, application)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m rekko.spark.package [OUTPUT]``: write the zip and print its path."""
    parser = argparse.ArgumentParser(
        prog="python -m rekko.spark.package",
        description="Zip the installed rekko package for Spark's --py-files.",
    )
    parser.add_argument("output", nargs="?", default=f"rekko-{rekko.__version__}.zip")
    arguments = parser.parse_args(argv)
    try:
        path = package_zip(arguments.output)
    except ModelError as error:
        parser.exit(1, f"error: {error}\n")
    sys.stdout.write(f"{path}\n")


if __name__ == "__main__":
    main()
