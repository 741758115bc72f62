"""Recommender models: one interface (:class:`Recommender`), a registry by name."""

from rekko.models.base import Abilities, Params, Recommender
from rekko.models.registry import available_models, create_model, get_model_class, load_model

__all__ = [
    "Abilities",
    "Params",
    "Recommender",
    "available_models",
    "create_model",
    "get_model_class",
    "load_model",
]
