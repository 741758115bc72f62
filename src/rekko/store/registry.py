"""Model versions on disk: one folder per version, and a pointer to the active one.

Layout of the registry folder::

    versions/<version>/model/         the saved model (Recommender.save)
    versions/<version>/version.json   algorithm, params, data fingerprint, metrics, status
    active.json                       {"active": ..., "history": [...], "split": ...}
    .lock                             serialises changes to active.json across processes

A version folder is written under a temporary name and renamed into place, so a reader never
sees half a version. ``active.json`` is replaced with ``os.replace`` (``Path.replace``), which
is atomic: a reader sees the old pointer or the new one, never a mix. ``history`` holds the
previously active versions (most recent last) for :meth:`ModelRegistry.rollback`. ``split``
routes a share of users to a second version (an A/B test).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rekko.errors import ModelError
from rekko.models.base import Recommender

POINTER = "active.json"
INFO = "version.json"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: How many previously active versions the pointer remembers for rollbacks.
HISTORY = 20


class VersionInfo(BaseModel):
    """What ``version.json`` holds about one model version."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    version: str
    algorithm: str
    params: dict[str, Any] = Field(default_factory=dict)
    created_at: str
    data_fingerprint: str | None = None
    events_watermark: int = 0
    metrics: dict[str, float] = Field(default_factory=dict)
    #: candidate (kept, may be activated) | rejected (failed the quality gate)
    status: str = "candidate"
    reason: str | None = None
    job_id: str | None = None
    holdout_fraction: float | None = None
    #: The active version's configuration scored on the same holdout (the gate's reference).
    baseline_metrics: dict[str, float] | None = None
    n_events: int | None = None
    n_users: int | None = None
    n_items: int | None = None
    #: The folder this version was pushed from (trained elsewhere), and a hash of its files.
    pushed_from: str | None = None
    model_hash: str | None = None


class Split(BaseModel):
    """Send ``share`` of users (by hashed user id) to ``version`` instead of the active one."""

    version: str
    share: float = Field(ge=0.0, le=1.0)


class Pointer(BaseModel):
    active: str | None = None
    history: list[str] = Field(default_factory=list)
    split: Split | None = None
    changed_at: str | None = None


@dataclass(frozen=True)
class SavedVersion:
    info: VersionInfo
    path: Path


def _stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_version_name(version: str) -> str:
    if not _VERSION_RE.match(version):
        raise ModelError(f"invalid model version name {version!r}")
    return version


class ModelRegistry:
    """The model versions under ``root`` (created when missing)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self.versions_dir.mkdir(parents=True, exist_ok=True)

    # -- versions -------------------------------------------------------------------------
    def new_version_name(self, algorithm: str) -> str:
        """A fresh name that sorts in creation order: ``v0007-als-20250102T030405Z``."""
        slug = re.sub(r"[^A-Za-z0-9]+", "-", algorithm).strip("-") or "model"
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        numbers = [_sequence(folder.name) for folder in self.versions_dir.iterdir()]
        return f"v{max([0, *numbers]) + 1:04d}-{slug}-{stamp}"

    def path(self, version: str) -> Path:
        return self.versions_dir / check_version_name(version)

    def exists(self, version: str) -> bool:
        return (self.path(version) / INFO).is_file()

    def save(self, model: Recommender, info: VersionInfo) -> SavedVersion:
        """Write a new version folder (atomically: temporary folder, then rename)."""
        final = self.path(info.version)
        if final.exists():
            raise ModelError(f"model version {info.version!r} already exists")
        staging = self.versions_dir / f".staging-{info.version}-{secrets.token_hex(4)}"
        try:
            model.save(staging / "model")
            (staging / INFO).write_text(info.model_dump_json(indent=2))
            staging.replace(final)  # a rename: atomic
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return SavedVersion(info, final)

    def info(self, version: str) -> VersionInfo:
        path = self.path(version) / INFO
        if not path.is_file():
            raise ModelError(f"unknown model version {version!r}")
        return VersionInfo.model_validate_json(path.read_text())

    def update_info(self, version: str, **changes: Any) -> VersionInfo:
        info = self.info(version).model_copy(update=changes)
        _write_atomically(self.path(version) / INFO, info.model_dump_json(indent=2))
        return info

    def list(self) -> list[VersionInfo]:
        """All versions, oldest first."""
        return list(self._infos(newest_first=False))

    def newest(self) -> VersionInfo | None:
        """The most recently created version (active or not), reading only its own info."""
        return next(self._infos(newest_first=True), None)

    def _infos(self, *, newest_first: bool) -> Iterator[VersionInfo]:
        folders = sorted(
            self.versions_dir.iterdir(),
            key=lambda f: (_sequence(f.name), f.name),
            reverse=newest_first,
        )
        for folder in folders:
            if folder.name.startswith(".") or not (folder / INFO).is_file():
                continue
            try:
                yield VersionInfo.model_validate_json((folder / INFO).read_text())
            except ValueError:
                continue  # a damaged version.json hides that version, not the whole list

    def load(self, version: str) -> Recommender:
        if not self.exists(version):
            raise ModelError(f"unknown model version {version!r}")
        return Recommender.load(self.path(version) / "model")

    # -- the pointer ----------------------------------------------------------------------
    def pointer(self) -> Pointer:
        path = self.root / POINTER
        try:
            return Pointer.model_validate_json(path.read_text())
        except FileNotFoundError:
            return Pointer()

    def pointer_text(self) -> str:
        """The raw pointer file (cheap change detection for other processes)."""
        try:
            return (self.root / POINTER).read_text()
        except FileNotFoundError:
            return ""

    @property
    def active(self) -> str | None:
        return self.pointer().active

    @contextmanager
    def _locked(self) -> Iterator[Pointer]:
        """The pointer, read under an exclusive lock (held until the block ends)."""
        import fcntl

        with (self.root / ".lock").open("a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield self.pointer()
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _write_pointer(self, pointer: Pointer) -> Pointer:
        pointer = pointer.model_copy(update={"changed_at": _stamp()})
        _write_atomically(self.root / POINTER, pointer.model_dump_json(indent=2))
        return pointer

    def activate(self, version: str) -> Pointer:
        """Make ``version`` the active one (the previous one goes to the history)."""
        if not self.exists(version):
            raise ModelError(f"unknown model version {version!r}")
        with self._locked() as pointer:
            if pointer.active == version:
                return pointer
            history = [*pointer.history, pointer.active] if pointer.active else pointer.history
            split = pointer.split if pointer.split and pointer.split.version != version else None
            return self._write_pointer(
                Pointer(active=version, history=history[-HISTORY:], split=split)
            )

    def _earlier(self, pointer: Pointer) -> tuple[str, ...]:
        return tuple(v for v in pointer.history if self.exists(v) and v != pointer.active)

    def rollback_target(self) -> str | None:
        """The version :meth:`rollback` would activate now (``None`` when there is none)."""
        history = self._earlier(self.pointer())
        return history[-1] if history else None

    def rollback(self) -> Pointer:
        """Re-activate the version that was active before the current one."""
        with self._locked() as pointer:
            history = [*self._earlier(pointer)]
            if not history:
                raise ModelError("no earlier model version to roll back to")
            previous = history.pop()
            return self._write_pointer(Pointer(active=previous, history=history, split=None))

    def set_split(self, version: str, share: float) -> Pointer:
        if not self.exists(version):
            raise ModelError(f"unknown model version {version!r}")
        with self._locked() as pointer:
            if pointer.active is None:
                raise ModelError("activate a model version before splitting traffic")
            if pointer.active == version:
                raise ModelError(f"version {version!r} is already the active one")
            split = Split(version=version, share=share)
            return self._write_pointer(pointer.model_copy(update={"split": split}))

    def clear_split(self) -> Pointer:
        with self._locked() as pointer:
            return self._write_pointer(pointer.model_copy(update={"split": None}))


def _sequence(name: str) -> int:
    """The number of a ``v0007-...`` version name (0 for other names)."""
    match = re.match(r"^v(\d+)-", name)
    return int(match.group(1)) if match else 0


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with temporary.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)  # os.replace: readers see the old file or the new one
