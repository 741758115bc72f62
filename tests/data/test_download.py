"""MovieLens downloads against a local HTTP server (never the internet)."""

from __future__ import annotations

import hashlib
import shutil
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rekko.data.download import KNOWN_MD5, download_movielens, extract_zip
from rekko.errors import DataError

VARIANT = "ml-tiny"
FILES = {"ml-tiny/u.data": "1\t1\t5\t881250949\n2\t1\t3\t881250950\n", "ml-tiny/README": "tiny\n"}


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _build_zip(path: Path, files: dict[str, str]) -> str:
    with zipfile.ZipFile(path, "w") as bundle:
        for name, text in files.items():
            bundle.writestr(name, text)
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    """(base URL, served folder, md5 of ml-tiny.zip) of a server on 127.0.0.1."""
    folder = tmp_path / "served"
    folder.mkdir()
    md5 = _build_zip(folder / f"{VARIANT}.zip", FILES)
    (folder / f"{VARIANT}.zip.md5").write_text(f"MD5 ({VARIANT}.zip) = {md5}\n")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", folder, md5
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(autouse=True)
def _online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REKKO_OFFLINE", raising=False)


def test_download_verifies_extracts_and_returns_the_folder(
    served: tuple[str, Path, str], tmp_path: Path
) -> None:
    base_url, _, md5 = served
    cache = tmp_path / "cache"
    folder = download_movielens(
        VARIANT, cache_dir=cache, base_url=base_url, checksums={VARIANT: md5}
    )
    assert folder == cache / VARIANT
    assert (folder / "u.data").read_text() == FILES["ml-tiny/u.data"]
    assert sorted(p.name for p in cache.iterdir()) == [VARIANT]  # no temporary files left


def test_cache_hit_needs_no_server(served: tuple[str, Path, str], tmp_path: Path) -> None:
    base_url, _, md5 = served
    cache = tmp_path / "cache"
    first = download_movielens(
        VARIANT, cache_dir=cache, base_url=base_url, checksums={VARIANT: md5}
    )
    again = download_movielens(
        VARIANT, cache_dir=cache, base_url="http://127.0.0.1:9/", checksums={VARIANT: md5}
    )
    assert again == first
    assert download_movielens(VARIANT, cache_dir=cache, offline=True) == first


def test_checksum_mismatch_raises_and_leaves_nothing(
    served: tuple[str, Path, str], tmp_path: Path
) -> None:
    base_url, _, md5 = served
    cache = tmp_path / "cache"
    wrong = "0" * 32
    with pytest.raises(DataError, match=f"expected MD5 {wrong}, got {md5}"):
        download_movielens(VARIANT, cache_dir=cache, base_url=base_url, checksums={VARIANT: wrong})
    assert list(cache.iterdir()) == []


def test_checksum_is_fetched_when_the_variant_is_not_in_the_table(
    served: tuple[str, Path, str], tmp_path: Path
) -> None:
    base_url, folder, _ = served
    cache = tmp_path / "cache"
    assert VARIANT not in KNOWN_MD5
    assert (download_movielens(VARIANT, cache_dir=cache, base_url=base_url) / "README").is_file()
    # A published checksum that does not match is refused as well.
    (folder / f"{VARIANT}.zip.md5").write_text(f"MD5 ({VARIANT}.zip) = {'f' * 32}\n")
    with pytest.raises(DataError, match=r"checksum mismatch"):
        download_movielens(VARIANT, cache_dir=tmp_path / "other", base_url=base_url)


def test_known_table_is_used_for_known_variants(
    served: tuple[str, Path, str], tmp_path: Path
) -> None:
    base_url, folder, md5 = served
    (folder / "ml-100k.zip").write_bytes((folder / f"{VARIANT}.zip").read_bytes())
    (folder / "ml-100k.zip.md5").write_text(f"MD5 (ml-100k.zip) = {md5}\n")  # ignored
    with pytest.raises(DataError, match=KNOWN_MD5["ml-100k"]):
        download_movielens("ml-100k", cache_dir=tmp_path / "cache", base_url=base_url)


def test_offline_without_cache_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"not in the cache.*offline"):
        download_movielens(VARIANT, cache_dir=tmp_path, offline=True)


def test_offline_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REKKO_OFFLINE", "1")
    monkeypatch.setenv("REKKO_CACHE", str(tmp_path / "env-cache"))
    with pytest.raises(DataError, match=r"env-cache"):
        download_movielens(VARIANT)


def test_missing_archive_names_the_url(served: tuple[str, Path, str], tmp_path: Path) -> None:
    base_url, _, _ = served
    with pytest.raises(DataError, match=r"ml-none\.zip answered HTTP 404"):
        download_movielens(
            "ml-none", cache_dir=tmp_path / "cache", base_url=base_url, checksums={"ml-none": "0"}
        )
    assert list((tmp_path / "cache").iterdir()) == []


def test_unreachable_server_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cannot reach"):
        download_movielens(
            VARIANT, cache_dir=tmp_path, base_url="http://127.0.0.1:9/", checksums={VARIANT: "0"}
        )


@pytest.mark.parametrize("variant", ["../evil", "ml-100k/../x", "", "ml-"])
def test_variant_names_are_checked(variant: str, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"invalid MovieLens variant"):
        download_movielens(variant, cache_dir=tmp_path)


@pytest.mark.parametrize("name", ["../outside.txt", "/abs.txt", "ml-tiny/../../x", "C:/x.txt"])
def test_unsafe_archive_paths_are_refused(
    name: str, served: tuple[str, Path, str], tmp_path: Path
) -> None:
    base_url, folder, _ = served
    md5 = _build_zip(folder / "ml-evil.zip", {"ml-evil/u.data": "1\t1\t1\t1\n", name: "x"})
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"unsafe path"):
        download_movielens(
            "ml-evil", cache_dir=cache, base_url=base_url, checksums={"ml-evil": md5}
        )
    assert list(cache.iterdir()) == []
    assert not (tmp_path / "outside.txt").exists()


def test_symlinks_in_archives_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "links.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        link = zipfile.ZipInfo("ml-x/link")
        link.external_attr = (0o120777 << 16) | 0
        bundle.writestr(link, "/etc/passwd")
    (tmp_path / "out").mkdir()
    with pytest.raises(DataError, match=r"unsafe path"):
        extract_zip(archive, tmp_path / "out")


def test_a_corrupt_archive_is_a_data_error(tmp_path: Path) -> None:
    archive = tmp_path / "bad.zip"
    archive.write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"not a valid zip"):
        extract_zip(archive, tmp_path)


def test_builtin_movielens_is_read_from_the_cache_without_data_dir(
    datasets_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rekko.config import DataSpec
    from rekko.errors import DataError

    monkeypatch.setenv("REKKO_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="rekko datasets download ml-100k"):
        DataSpec(dataset="movielens-100k").load()
    shutil.copytree(datasets_dir / "ml-100k", tmp_path / "cache" / "ml-100k")
    data = DataSpec(dataset="movielens-100k").load()
    assert (data.n_users, data.n_items, len(data)) == (943, 1682, 100_000)
    with pytest.raises(DataError, match="needs --data-dir"):
        DataSpec(dataset="fiverr").load()
