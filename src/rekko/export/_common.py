"""What every export shares: the model's export contract, the manifest, id lists."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rekko.errors import ModelError
from rekko.models.base import Recommender
from rekko.models.contract import ExportContract

MANIFEST = "manifest.json"
FORMAT = "rekko-export"
FORMAT_VERSION = 1


def contract_of(model: Recommender, what: str) -> ExportContract:
    """The export contract of a fitted ``model``, or a clear error naming it."""
    model.fitted()
    contract = model.export_contract()
    if contract is None:
        raise not_exportable(model, what)
    return contract


def not_exportable(model: Recommender, what: str) -> ModelError:
    return ModelError(
        f"model '{model.name}' cannot be exported as {what}: it has neither user/item embeddings "
        "(two-tower, multitask, neural-mf, als, bpr) nor a pair-scoring network (ranking, "
        "neural-mlp); its export_contract() is None"
    )


def prepare_folder(directory: str | Path) -> Path:
    """An empty folder at ``directory`` (an existing export there is replaced)."""
    folder = Path(directory)
    if folder.exists():
        if not folder.is_dir():
            raise ModelError(f"{folder}: exists and is not a folder")
        if any(folder.iterdir()) and not (folder / MANIFEST).is_file():
            raise ModelError(f"{folder}: not empty and not a rekko export; choose another folder")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def external_strings(values: npt.NDArray[Any]) -> list[str]:
    """External ids as the strings an export looks them up by."""
    return [str(v) for v in values.tolist()]


def write_ids(folder: Path, model: Recommender) -> dict[str, str]:
    """``users.txt`` and ``items.txt``: one external id per line, in index order."""
    user_map, item_map, _ = model.fitted()
    (folder / "users.txt").write_text("\n".join(external_strings(user_map.external_ids)) + "\n")
    (folder / "items.txt").write_text("\n".join(external_strings(item_map.external_ids)) + "\n")
    return {
        "users.txt": "user ids, one per line; line n (from 0) is user index n",
        "items.txt": "item ids, one per line; line n (from 0) is item index n",
    }


def write_manifest(folder: Path, model: Recommender, kind: str, body: dict[str, Any]) -> Path:
    """``manifest.json``: what was exported, from which model and data, and how to call it."""
    from rekko import __version__

    user_map, item_map, _ = model.fitted()
    metadata = model.metadata_
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "model": model.name,
        "params": model.params.model_dump(mode="json"),
        "rekko_version": __version__,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data_fingerprint": metadata.get("data_fingerprint"),
        "data_name": metadata.get("data_name"),
        "trained_at": metadata.get("trained_at"),
        "id_kinds": {"users": user_map.kind, "items": item_map.kind},
        **body,
    }
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, default=_json_default))
    return path


def _json_default(value: object) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of an export folder."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ModelError(f"{directory}: not a rekko export (no {MANIFEST})")
    manifest: dict[str, Any] = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ModelError(f"{path}: not a rekko export manifest")
    return manifest
