"""rekko: recommendations from your own data.

Importing the package is cheap: the data layer, models and the CLI load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rekko.errors import DataError, ModelError, RekkoError, UnknownIdError

__version__ = "0.1.0"

if TYPE_CHECKING:
    from rekko.data.dataset import Dataset, EventWeights
    from rekko.data.idmap import IdMap

_LAZY = {
    "Dataset": "rekko.data.dataset",
    "EventWeights": "rekko.data.dataset",
    "IdMap": "rekko.data.idmap",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rekko' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "DataError",
    "Dataset",
    "EventWeights",
    "IdMap",
    "ModelError",
    "RekkoError",
    "UnknownIdError",
    "__version__",
]
