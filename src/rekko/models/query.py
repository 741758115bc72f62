"""What a visitor without a history can tell a model, and what the model answers.

A :class:`Query` carries any mix of free text, stated preferences (item features -> wanted
values), a basket (items the visitor just interacted with) and user features (age, country).
:meth:`Recommender.rank_query <rekko.models.base.Recommender.rank_query>` answers every query on
every model: a model that declares ``abilities.queries`` reads the parts it understands with its
own scoring; otherwise, and when the model's own step matched nothing, the shared routes of
:mod:`rekko.models.cold` answer (basket, preferences, keywords, popularity). The answer names the
route that served it (``source``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from rekko.errors import DataError


class PreferenceError(DataError):
    """Stated preferences or user features that name unknown features or give values they
    cannot take."""


@dataclass(frozen=True)
class Query:
    """A request for someone the model does not know.

    Attributes:
        text: free text ("cute anime character", "ayam pedas").
        preferences: item feature -> wanted value(s) (``{"style": "anime", "price": 20}``);
            models without their own query step treat them as hard constraints.
        basket: external ids of items the visitor interacted with; never recommended back.
        user_features: user feature -> value (``{"age": 31, "country": "de"}``), for models
            trained with user features.
    """

    text: str | None = None
    preferences: Mapping[str, Any] | None = None
    basket: Sequence[object] = ()
    user_features: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.text is not None and not isinstance(self.text, str):
            raise DataError(f"query text must be a string, got {self.text!r}")
        for name in ("preferences", "user_features"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Mapping):
                raise DataError(f"query {name} must be a mapping of feature -> value")
        if isinstance(self.basket, (str, bytes)):
            raise DataError("query basket must be a list of item ids, not one string")
        object.__setattr__(self, "basket", tuple(self.basket))
        if self.text is not None and not self.text.strip():
            object.__setattr__(self, "text", None)

    @property
    def is_empty(self) -> bool:
        return (
            self.text is None
            and not self.preferences
            and not self.basket
            and not self.user_features
        )

    @classmethod
    def of(cls, value: str | Mapping[str, Any] | Query | None) -> Query:
        """A query from free text, a mapping of preferences (``"text"`` for free text), or a
        query (returned as is)."""
        if value is None:
            return cls()
        if isinstance(value, Query):
            return value
        if isinstance(value, str):
            return cls(text=value)
        if isinstance(value, Mapping):
            preferences = {k: v for k, v in value.items() if k != "text"}
            text = value.get("text")
            return cls(text=None if text is None else str(text), preferences=preferences or None)
        raise DataError(f"a query is text or a mapping of preferences, got {value!r}")


@dataclass(frozen=True)
class QueryScores:
    """A model's own scores of every item for a query (higher is better).

    ``source`` names the step that produced them (``content``, ``demographic``...); ``allowed``
    narrows the items that may be returned (stated preferences read as constraints).
    """

    scores: npt.NDArray[np.float32]
    source: str
    allowed: npt.NDArray[np.bool_] | None = None


@dataclass(frozen=True)
class QueryRanking:
    """The answer to a query: item indices and scores, best first, and where they came from.

    ``note`` says why a later route answered (the query matched nothing the model knows...).
    """

    items: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float32]
    source: str
    note: str | None = None
