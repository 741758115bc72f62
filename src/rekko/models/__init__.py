"""Recommender models: one interface (:class:`Recommender`), a registry by name."""

from rekko.models.base import Abilities, Params, Ranking, Recommender
from rekko.models.query import Query, QueryRanking
from rekko.models.registry import available_models, create_model, get_model_class, load_model

__all__ = [
    "Abilities",
    "Params",
    "Query",
    "QueryRanking",
    "Ranking",
    "Recommender",
    "available_models",
    "create_model",
    "get_model_class",
    "load_model",
]
