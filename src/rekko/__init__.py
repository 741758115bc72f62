"""rekko: recommendations from your own data.

Importing the package is cheap: heavy parts (models, TensorFlow, the CLI) load on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

from rekko.data.dataset import Dataset, EventWeights
from rekko.data.idmap import IdMap
from rekko.errors import DataError, ModelError, RekkoError, UnknownIdError

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
