"""Download MovieLens archives from GroupLens into a local cache, verified and safely extracted.

The archive is streamed to a temporary file in the cache folder, its MD5 checked against a
built-in table (or GroupLens' ``<zip>.md5`` file for variants not in it), extracted into a
temporary folder and only then renamed into place, so the cache never holds half an archive.
The cache is ``$REKKO_CACHE`` or ``~/.cache/rekko``; with ``offline=True`` (or
``REKKO_OFFLINE=1``) only the cache is used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from types import MappingProxyType

from rekko.errors import DataError

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://files.grouplens.org/datasets/movielens/"

#: MD5 of GroupLens' archives (they publish each as ``<zip>.md5``); the "latest" archives
#: change over time, so their checksum is fetched instead.
KNOWN_MD5: Mapping[str, str] = MappingProxyType(
    {
        "ml-100k": "0e33842e24a9c977be4e0107933c0723",
        "ml-1m": "c4d9eecfca2ab87c1945afe126590906",
        "ml-10m": "ce571fd55effeba0271552578f2648bd",
        "ml-20m": "cd245b17a1ae2cc31bb14903e1204af3",
        "ml-25m": "6b51fb2759a8657d3bfcbfc42b592ada",
    }
)

_VARIANT = re.compile(r"ml-[A-Za-z0-9][A-Za-z0-9_-]*")
_MD5 = re.compile(r"\b([0-9a-fA-F]{32})\b")
_CHUNK = 1 << 20
#: Refuse archives that claim to unpack to more than this (a "zip bomb").
MAX_EXTRACTED_BYTES = 8 << 30


def default_cache_dir() -> Path:
    """``$REKKO_CACHE``, else ``~/.cache/rekko``."""
    configured = os.environ.get("REKKO_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "rekko"


def offline_mode() -> bool:
    """Whether ``REKKO_OFFLINE`` asks for no network access."""
    return os.environ.get("REKKO_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def download_movielens(
    variant: str = "ml-100k",
    *,
    cache_dir: Path | None = None,
    base_url: str = DEFAULT_BASE_URL,
    offline: bool = False,
    checksums: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> Path:
    """The extracted folder of a MovieLens archive, downloaded once into the cache.

    Args:
        variant: the archive name without ``.zip``: ``ml-100k``, ``ml-1m``, ``ml-latest-small``...
        cache_dir: where archives are extracted (default :func:`default_cache_dir`).
        base_url: the folder URL holding ``<variant>.zip`` (and ``<variant>.zip.md5``).
        offline: use only the cache (also set by ``REKKO_OFFLINE=1``).
        checksums: expected MD5 per variant, instead of :data:`KNOWN_MD5`; a variant in
            neither has its checksum fetched from ``<variant>.zip.md5``.
        timeout: seconds to wait on the network before giving up.

    Raises:
        DataError: when offline without a cached copy, on a network error, or when the
            archive's checksum or contents are wrong (nothing is left in the cache then).
    """
    if not _VARIANT.fullmatch(variant):
        raise DataError(f"invalid MovieLens variant {variant!r} (expected a name like 'ml-100k')")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache / variant
    if target.is_dir():
        logger.debug("MovieLens %s found in the cache at %s", variant, target)
        return target
    if offline or offline_mode():
        raise DataError(
            f"MovieLens {variant} is not in the cache ({target}) and offline mode is on; "
            "download it once while online, or extract the archive there yourself"
        )
    if not base_url.startswith(("http://", "https://")):
        raise DataError(f"base_url must be an http(s) URL, got {base_url!r}")
    url = base_url.rstrip("/") + f"/{variant}.zip"
    table = KNOWN_MD5 if checksums is None else checksums
    expected = table.get(variant) or _published_md5(url, timeout)
    cache.mkdir(parents=True, exist_ok=True)
    archive = _fetch(url, cache, variant, expected.lower(), timeout)
    try:
        return _install(archive, target)
    finally:
        archive.unlink(missing_ok=True)


def _published_md5(url: str, timeout: float) -> str:
    """The checksum GroupLens publishes beside an archive (``MD5 (x.zip) = <hex>``)."""
    text = _open(url + ".md5", timeout).read(4096).decode("ascii", errors="replace")
    found = _MD5.search(text)
    if found is None:
        raise DataError(f"no MD5 checksum found in {url}.md5: refusing an unverified download")
    return found.group(1)


def _open(url: str, timeout: float) -> urllib.response.addinfourl:
    request = urllib.request.Request(url, headers={"User-Agent": "rekko"})
    try:
        response: urllib.response.addinfourl = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise DataError(f"download failed: {url} answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"download failed: cannot reach {url} ({reason}); use a cached copy offline"
        ) from None
    return response


def _fetch(url: str, cache: Path, variant: str, expected: str, timeout: float) -> Path:
    """Stream ``url`` to a temporary file in ``cache`` and check its MD5."""
    digest = hashlib.md5(usedforsecurity=False)
    with _open(url, timeout) as response:
        descriptor, name = tempfile.mkstemp(dir=cache, prefix=f".{variant}-", suffix=".zip.part")
        path = Path(name)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                logger.info("downloading %s", url)
                while chunk := response.read(_CHUNK):
                    digest.update(chunk)
                    handle.write(chunk)
        except OSError as exc:  # a broken connection, or a full disk
            path.unlink(missing_ok=True)
            raise DataError(f"download failed: {url} ({exc})") from None
        except BaseException:
            path.unlink(missing_ok=True)
            raise
    actual = digest.hexdigest()
    if actual != expected:
        path.unlink(missing_ok=True)
        raise DataError(
            f"checksum mismatch for {url}: expected MD5 {expected}, got {actual} "
            "(the download was deleted)"
        )
    return path


def _install(archive: Path, target: Path) -> Path:
    """Extract ``archive`` beside ``target`` and rename it into place in one step."""
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        extract_zip(archive, staging)
        entries = list(staging.iterdir())
        # GroupLens archives hold one folder (ml-10m's is called ml-10M100K).
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else staging
        try:
            root.rename(target)
        except OSError:
            if not target.is_dir():
                raise
            logger.debug("another process installed %s first", target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def extract_zip(archive: Path, destination: Path) -> None:
    """Extract ``archive`` into ``destination``, refusing entries that would land outside it.

    Absolute paths, ``..`` parts, drive letters and symbolic links are errors, as is an
    archive that claims to unpack to more than :data:`MAX_EXTRACTED_BYTES`.
    """
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            if sum(member.file_size for member in members) > MAX_EXTRACTED_BYTES:
                raise DataError("the archive is too large to extract", source=archive.name)
            base = destination.resolve()
            for member in members:
                _check_member(member, base, archive.name)
            for member in members:
                bundle.extract(member, destination)
    except zipfile.BadZipFile as exc:
        raise DataError(f"not a valid zip archive ({exc})", source=archive.name) from None


def _check_member(member: zipfile.ZipInfo, base: Path, source: str) -> None:
    name = member.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    unsafe = (
        name.startswith("/")
        or re.match(r"^[A-Za-z]:", name) is not None
        or ".." in parts
        or stat.S_ISLNK(member.external_attr >> 16)
        or not (base / name).resolve().is_relative_to(base)
    )
    if unsafe:
        raise DataError(f"unsafe path {member.filename!r} in the archive", source=source)
