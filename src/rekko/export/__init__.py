"""Exports of trained models for serving without rekko: SavedModel and TFLite (LiteRT).

Importing this package does not import TensorFlow; the export functions do. Each export
folder holds a ``manifest.json`` (inputs, outputs, vocabulary sizes, rekko version, data
fingerprint) next to the files. The exporters read only what the model declares in its
:meth:`~rekko.models.base.Recommender.export_contract` (:mod:`rekko.models.contract`). See
:mod:`rekko.export.savedmodel` and :mod:`rekko.export.tflite` for what each format answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from rekko.errors import ModelError
from rekko.export._common import read_manifest
from rekko.export.savedmodel import export_ranking_savedmodel, export_savedmodel
from rekko.export.tflite import export_tflite, run_tflite

ExportFormat = Literal["savedmodel", "tflite"]


def export_model(model_dir: Path, fmt: ExportFormat, output: Path) -> Path:
    """Load the model folder ``model_dir`` and export it as ``fmt`` into ``output``.

    The entry point of ``rekko export --model DIR --format savedmodel|tflite --output DIR``.
    Returns the export folder.
    """
    from rekko.models import load_model

    model = load_model(model_dir)
    if fmt == "savedmodel":
        return export_savedmodel(model, output)
    if fmt == "tflite":
        return export_tflite(model, output)
    raise ModelError(f"unknown export format {fmt!r} (use 'savedmodel' or 'tflite')")


__all__ = [
    "ExportFormat",
    "export_model",
    "export_ranking_savedmodel",
    "export_savedmodel",
    "export_tflite",
    "read_manifest",
    "run_tflite",
]
