"""Soft, knowledge-based preferences: raise (or lower) items that match a constraint.

A filter (:mod:`rekko.constraints`) removes items; a :class:`Boost` only moves them. The
ensemble models (``hybrid``, ``fallback``) add each boost to their normalised scores, which lie
in ``[0, 1]`` for the default min-max normalisation, so a weight of ``0.2`` lifts a matching item
by a fifth of the range between a user's worst and best item. A negative weight demotes.

A boost on a :class:`~rekko.constraints.Within` constraint decays with distance: full weight at
the point, falling linearly to nothing at ``km`` kilometres. Inside an
:class:`~rekko.constraints.AllOf`, the parts multiply (a distance decay times a 0/1 match).

Boosts are written in code (``Boost(Equals("category", "books"), 0.2)``) or as a JSON-like list,
the form the CLI and the HTTP API take (see :func:`parse_boosts`)::

    [{"where": {"category": "books"}, "weight": 0.2},
     {"where": {"near": {"lat": 52.5, "lon": 13.4, "km": 5}}, "weight": 0.1}]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from rekko.constraints import AllOf, Constraint, Within, distances_km, parse_constraints
from rekko.data.dataset import FeatureTable
from rekko.errors import DataError


@dataclass(frozen=True)
class Boost:
    """Add ``weight`` to the scores of items that satisfy ``constraint``."""

    constraint: Constraint
    weight: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.weight):
            raise DataError(f"boost weight must be a finite number, got {self.weight!r}")

    def scores(self, features: FeatureTable) -> npt.NDArray[np.float64]:
        """What this boost adds to each item's score (0 for items it does not match)."""
        return self.weight * match_strength(self.constraint, features)


def match_strength(constraint: Constraint, features: FeatureTable) -> npt.NDArray[np.float64]:
    """How well each item matches, in ``[0, 1]``: 1/0 for most constraints, a linear distance
    decay for :class:`~rekko.constraints.Within`, the product of the parts for
    :class:`~rekko.constraints.AllOf`."""
    if isinstance(constraint, Within):
        distance = distances_km(features, constraint.latitude, constraint.longitude)
        if constraint.km == 0:
            strength = (distance == 0).astype(np.float64)
        else:
            strength = np.clip(1.0 - distance / constraint.km, 0.0, 1.0)
        return np.asarray(np.nan_to_num(strength, nan=0.0), dtype=np.float64)
    if isinstance(constraint, AllOf):
        strength = np.ones(len(features.frame), dtype=np.float64)
        for part in constraint.constraints:
            strength *= match_strength(part, features)
        return strength
    return constraint.mask(features).astype(np.float64)


def boost_scores(
    boosts: Sequence[Boost], features: FeatureTable | None, n_items: int
) -> npt.NDArray[np.float64] | None:
    """The summed boosts of every item, or ``None`` when there are none."""
    if not boosts:
        return None
    if features is None:
        raise DataError("boosts need item features, and the model was trained without them")
    total = np.zeros(n_items, dtype=np.float64)
    for boost in boosts:
        total += boost.scores(features)
    return total


def parse_boosts(spec: Sequence[Mapping[str, Any]]) -> list[Boost]:
    """Build boosts from ``[{"where": {constraint mapping}, "weight": number}, ...]``.

    ``where`` takes the form of :func:`~rekko.constraints.parse_constraints`.
    """
    if isinstance(spec, (str, Mapping)) or not isinstance(spec, Sequence):
        raise DataError("boosts must be a list of {'where': {...}, 'weight': number}")
    boosts: list[Boost] = []
    for position, entry in enumerate(spec):
        if not isinstance(entry, Mapping) or set(entry) != {"where", "weight"}:
            raise DataError(
                f"boost {position + 1}: expected {{'where': {{...}}, 'weight': number}}, "
                f"got {entry!r}"
            )
        try:
            weight = float(entry["weight"])
        except (TypeError, ValueError):
            raise DataError(
                f"boost {position + 1}: weight must be a number, got {entry['weight']!r}"
            ) from None
        constraint = parse_constraints(entry["where"])
        parts = constraint.constraints
        boosts.append(Boost(parts[0] if len(parts) == 1 else constraint, weight))
    return boosts
