"""The shared routes that answer a :class:`~rekko.models.query.Query` on any model.

Tried in this order, after the model's own query step (``abilities.queries``) when it has one:

* ``basket``: items like the basket's, by the model's own item similarity when it has one
  (``similar_items``), else by co-occurrence in the interactions (people who took a basket
  item also took...);
* ``keywords``: items whose text and label features share the most words with the text;
* ``preferences``: stated preferences as hard constraints over the most popular items (they
  also narrow the two routes above);
* ``popularity``: the most popular items.

Popularity breaks ties everywhere. Scores are the route's own: summed similarity,
co-occurrence counts, matching words, or the number of users who took the item.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from rekko.constraints import parse_constraints
from rekko.errors import DataError, ModelError
from rekko.index.topk import top_k
from rekko.models.query import PreferenceError, Query, QueryRanking

if TYPE_CHECKING:
    from rekko.models.base import Recommender

_WORD = re.compile(r"\w+", re.UNICODE)
#: The shared routes' names, as answers give them in ``source``.
ROUTES = ("basket", "keywords", "preferences", "popularity")


def answer(
    model: Recommender,
    query: Query,
    basket: npt.NDArray[np.int64],
    allowed: npt.NDArray[np.bool_],
    k: int,
    note: str | None = None,
) -> QueryRanking:
    """The first shared route that can answer ``query`` (``basket``: its known item indices,
    already excluded from ``allowed``)."""
    popularity = model.popularity()
    positions = model.derived(
        "popularity_positions",
        lambda: np.argsort(np.argsort(-popularity, kind="stable"), kind="stable"),
        depends_on=popularity,
    )
    if query.preferences:
        allowed = allowed & preference_mask(model, query)
        if not allowed.any():
            note = note or "no item has the stated preferences"
    if len(basket):
        scores = basket_scores(model, basket)
        return _ranked(scores, positions, allowed, k, "basket", note)
    if query.basket and note is None:
        note = "none of the given items is known to the model"
    if query.text:
        matches = keyword_scores(model, query.text)
        if matches is None:
            note = note or "this model has no item features to match text"
        elif (allowed & (matches > 0)).any():
            return _ranked(matches, positions, allowed & (matches > 0), k, "keywords", note)
        else:
            note = note or "no item matches a word of the query"
    source = "preferences" if query.preferences else "popularity"
    return _ranked(popularity, positions, allowed, k, source, note)


def preference_mask(model: Recommender, query: Query) -> npt.NDArray[np.bool_]:
    """Items that have every stated preference (raises :class:`PreferenceError`)."""
    assert query.preferences
    features = model.item_features_
    try:
        constraint = parse_constraints(dict(query.preferences))
        if features is None:
            raise ModelError(
                f"model '{model.name}' was trained without item features, so it cannot read "
                "stated preferences"
            )
        return constraint.mask(features)
    except (DataError, ModelError) as error:
        raise PreferenceError(str(error)) from None


def basket_scores(model: Recommender, basket: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Summed similarity of every item to the basket's, or co-occurrence counts."""
    if model.abilities.similar_items:
        try:
            similar = np.asarray(model._similar(basket), np.float64)
            summed: npt.NDArray[np.float64] = similar.sum(axis=0)
            return summed
        except ModelError:  # an ensemble whose components find no similar items
            pass
    by_item, by_user = model.derived("cooccurrence", lambda: _cooccurrence(model))
    users = np.asarray(by_item[:, basket].sum(axis=1)).ravel()
    return np.asarray(by_user @ users, dtype=np.float64).ravel()


def keyword_scores(model: Recommender, text: str) -> npt.NDArray[np.float64] | None:
    """How many words of ``text`` each item's text and label features hold (``None`` for a
    model without item features)."""
    texts = _item_words(model)
    if texts is None:
        return None
    words = {w.casefold() for w in _WORD.findall(text)}
    return np.fromiter((len(words & t) for t in texts), dtype=np.float64, count=len(texts))


def _ranked(
    scores: npt.NDArray[np.floating],
    positions: npt.NDArray[np.int64],
    allowed: npt.NDArray[np.bool_],
    k: int,
    source: str,
    note: str | None,
) -> QueryRanking:
    """Top ``k`` allowed items by ``scores``; equal scores go by popularity (``positions``:
    0 for the most popular item), then by item index."""
    primary = np.asarray(scores, dtype=np.float64)
    # Steps that add up to far less than the gap between distinct float32 scores.
    scale = max(float(np.abs(primary[np.isfinite(primary)]).max(initial=0.0)), 1.0)
    ranked = primary - positions * (scale * 2.0**-30 / max(len(primary), 1))
    best, _ = top_k(np.where(allowed, ranked, -np.inf)[None, :], k)
    chosen = best[0][best[0] >= 0]
    return QueryRanking(chosen, primary[chosen].astype(np.float32), source, note)


def _cooccurrence(model: Recommender) -> tuple[sp.csc_matrix, sp.csr_matrix]:
    _, _, seen = model.fitted()
    binary = sp.csr_matrix(seen, dtype=np.float32, copy=True)
    binary.data[:] = 1.0
    return binary.tocsc(), binary.T.tocsr()


def _item_words(model: Recommender) -> list[set[str]] | None:
    features = model.item_features_
    if features is None:
        return None

    def collect() -> list[set[str]]:
        assert features is not None
        texts: list[set[str]] = [set() for _ in range(len(features.frame))]
        for name in features.columns_of("text", "categorical", "multi"):
            for position, value in enumerate(features.frame[name]):
                parts = value if isinstance(value, tuple) else (value,)
                for part in parts:
                    if part is not None:
                        texts[position].update(w.casefold() for w in _WORD.findall(str(part)))
        return texts

    words: list[set[str]] = model.derived("item_words", collect, depends_on=features)
    return words
