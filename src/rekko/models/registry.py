"""Every model by name, so the CLI, the service and the tests find all of them.

A model module registers its classes with :func:`register`. Every module of the
``rekko.models`` package is imported on the first look-up (not at ``import rekko``, which stays
fast). A module whose optional dependencies are missing must still import: it registers its
models and raises a clear error when one is fitted (see ``Abilities`` and ``requires``).
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any, TypeVar

from rekko.errors import ModelError
from rekko.models.base import Recommender

_REGISTRY: dict[str, type[Recommender]] = {}
_loaded = False

ModelClass = TypeVar("ModelClass", bound=type[Recommender])


def register(model_class: ModelClass) -> ModelClass:
    """Class decorator: make a model available under its ``name``."""
    name = model_class.name
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not model_class:
        raise ModelError(f"two models are registered as {name!r}")
    _REGISTRY[name] = model_class
    return model_class


def _load_all() -> None:
    global _loaded
    if not _loaded:
        import rekko.models as package

        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"rekko.models.{module.name}")
        _loaded = True


def available_models() -> list[str]:
    """Names of all registered models, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def get_model_class(name: str) -> type[Recommender]:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ModelError(f"unknown model {name!r} (available: {known})") from None


def create_model(name: str, **params: Any) -> Recommender:
    """A new, untrained model by registry name."""
    return get_model_class(name)(**params)


def load_model(directory: str | Path) -> Recommender:
    """Load a saved model folder, whatever its model class."""
    return Recommender.load(directory)
