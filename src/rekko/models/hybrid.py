"""Ensembles of registered models: a weighted blend (``hybrid``) and a chain for users with
little or no history (``fallback``).

Both train their component models on the same data set and combine the components' scores
after normalising each user's score row over the items that may be recommended (the allowed,
unseen items): ``minmax`` to ``[0, 1]``, ``zscore``, or ``rank`` (``0`` worst, ``1`` best). A
constant row says nothing and becomes all zeros. Soft preferences (:class:`~rekko.boosts.Boost`)
are added to the normalised scores: ``recommend(users, boosts=[...])``.

A model folder holds the components' arrays in its own ``state.npz`` (keys prefixed by the
component's role), so :meth:`Recommender.load` restores an ensemble like any other model.

Components that cannot fold in new users (``abilities.fold_in`` false) keep scoring only the
users they were trained on; for users added later with ``add_interactions`` they have no
opinion (a constant row, ignored by the blend), except ``popularity``, which scores everyone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from pydantic import Field, field_validator, model_validator
from scipy.stats import rankdata

from rekko.data.dataset import Dataset
from rekko.data.idmap import IdMap
from rekko.errors import DataError, ModelError, RekkoError
from rekko.models.base import Abilities, Params, Recommender, seen_entries
from rekko.models.content import ContentModel, QueryText
from rekko.models.query import Query, QueryScores
from rekko.models.registry import create_model, get_model_class, register

Normalise = Literal["minmax", "zscore", "rank"]

#: Users blended at once inside a batch (bounds memory to CHUNK x n_items float64 per component).
CHUNK_USERS = 64
#: Components whose scores do not depend on the user, so they serve users added after training.
_USER_INDEPENDENT = frozenset({"popularity"})


# -- normalising and blending ----------------------------------------------------------------
def normalise_scores(
    scores: npt.ArrayLike,
    mask: npt.ArrayLike | None = None,
    method: Normalise = "minmax",
) -> npt.NDArray[np.float64]:
    """Rescale each row of ``scores`` over the entries where ``mask`` is true.

    ``minmax`` maps a row to ``[0, 1]``; ``zscore`` to mean 0 and standard deviation 1 (so
    ``|z| <= sqrt(n - 1)``); ``rank`` to ``(rank - 1) / (n - 1)`` in ``[0, 1]`` with ties sharing
    their mean rank. Entries outside the mask, and every entry of a row whose allowed scores are
    all equal, become 0. Non-finite scores count as the row's lowest (``nan``, ``-inf``) or
    highest (``+inf``) finite allowed score.
    """
    values = np.array(scores, dtype=np.float64, ndmin=2)
    if values.ndim != 2:
        raise ValueError("scores must be a 2-d array (users x items)")
    allowed = (
        np.ones(values.shape, dtype=bool)
        if mask is None
        else np.broadcast_to(np.asarray(mask, dtype=bool), values.shape)
    )
    finite = np.isfinite(values)
    all_finite = bool(finite.all())  # the usual case: fewer passes (this runs per request)
    valid = allowed if all_finite else allowed & finite
    low = values.min(axis=1, keepdims=True, where=valid, initial=np.inf)
    high = values.max(axis=1, keepdims=True, where=valid, initial=-np.inf)
    empty = ~np.isfinite(low)
    if empty.any():
        low[empty] = 0.0
        high[empty] = 0.0
    if not all_finite:
        values = np.where(finite, values, np.where(values > 0, high, low))
    span = high - low
    varied = allowed & (span > 0)
    if method == "minmax":
        out = (values - low) / np.where(span > 0, span, 1.0)
        return np.where(varied, np.minimum(np.maximum(out, 0.0), 1.0), 0.0)
    counts = allowed.sum(axis=1, keepdims=True)
    if method == "zscore":
        mean = np.where(allowed, values, 0.0).sum(axis=1, keepdims=True) / np.maximum(counts, 1)
        deviation = np.where(allowed, values - mean, 0.0)
        std = np.sqrt((deviation**2).sum(axis=1, keepdims=True) / np.maximum(counts, 1))
        return np.where(varied, deviation / np.where(std > 0, std, 1.0), 0.0)
    if method == "rank":
        ranks = rankdata(np.where(allowed, values, -np.inf), axis=1, method="average")
        hidden = values.shape[1] - counts
        out = (ranks - hidden - 1) / np.maximum(counts - 1, 1)
        return np.where(varied, np.clip(out, 0.0, 1.0), 0.0)
    raise ValueError(f"normalise must be 'minmax', 'zscore' or 'rank', got {method!r}")


def blend_scores(
    rows: Sequence[npt.ArrayLike],
    weights: Sequence[float],
    mask: npt.ArrayLike | None = None,
    method: Normalise = "minmax",
) -> npt.NDArray[np.float64]:
    """The weighted mean of the normalised score arrays ``rows`` (weights sum to one).

    A component with weight 0 is not even normalised: it cannot change the result.
    """
    if len(rows) != len(weights) or not rows:
        raise ValueError("blend needs one weight per score array, and at least one array")
    weight_array = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(weight_array)) or np.any(weight_array < 0):
        raise ValueError("blend weights must be finite numbers >= 0")
    total = float(weight_array.sum())
    if total <= 0:
        raise ValueError("at least one blend weight must be above 0")
    out: npt.NDArray[np.float64] | None = None
    for row, weight in zip(rows, weight_array.tolist(), strict=True):
        if weight == 0:
            continue
        part = (weight / total) * normalise_scores(row, mask, method)
        out = part if out is None else out + part
    assert out is not None
    return out


# -- the shared machinery --------------------------------------------------------------------
class _Ensemble(Recommender):
    """Trains, saves, folds in and scores named component models (not registered itself).

    Subclasses name their components (``_roles``, ``_role_spec``) and weigh them (``_weight``)
    or combine them otherwise (``_blend``: normalised scores, shape (len(users), n_items), for
    a mask of allowed items).
    """

    abilities = Abilities(
        cold_users=True,
        uses_features=True,
        fold_in=True,
        similar_items=True,
        queries=True,
        boosts=True,
    )

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.components_: dict[str, Recommender] = {}
        # How many users (from index 0) each component can score.
        self.component_users_: dict[str, int] = {}
        for role in self._planned_roles():
            name, role_params = self._role_spec(role)
            try:
                create_model(name, **role_params)
            except RekkoError as error:
                raise ModelError(f"{self.name}: component {role!r}: {error}") from None

    # -- what subclasses provide -----------------------------------------------------------
    def _planned_roles(self) -> list[str]:
        """Roles checked at construction (every role the parameters can give)."""
        raise NotImplementedError

    def _roles(self, dataset: Dataset) -> list[str]:
        """Roles trained on ``dataset``."""
        return self._planned_roles()

    def _role_spec(self, role: str) -> tuple[str, dict[str, Any]]:
        """Registry name and parameters of the component playing ``role``."""
        raise NotImplementedError

    def _blend(
        self, users: npt.NDArray[np.int64], mask: npt.NDArray[np.bool_] | None
    ) -> npt.NDArray[np.float64]:
        """The weighted mean of the components' normalised scores (weights from ``_weight``)."""
        method = self._method()
        total = sum(self._weight(role) for role in self.components_)
        out = np.zeros((len(users), len(self._fitted()[1])), dtype=np.float64)
        for role in self.components_:
            weight = self._weight(role) / total
            out += weight * normalise_scores(
                self._component_scores(role, users, mask), mask, method
            )
        return out

    # -- fitting ---------------------------------------------------------------------------
    def _fit(self, dataset: Dataset) -> None:
        self.components_ = {}
        self.component_users_ = {}
        for role in self._roles(dataset):
            name, role_params = self._role_spec(role)
            try:
                component = create_model(name, **role_params).fit(dataset)
            except DataError as error:
                raise DataError(f"{self.name}: component {role!r}: {error}") from error
            except ModelError as error:
                raise ModelError(f"{self.name}: component {role!r}: {error}") from error
            self.components_[role] = component
            self.component_users_[role] = dataset.n_users

    def _refresh_users(self, users: npt.NDArray[np.int64]) -> None:
        user_map, _, seen = self._fitted()
        for role, component in self.components_.items():
            if component.abilities.fold_in:
                component.users_ = user_map
                component.seen_ = seen
                component._refresh_users(users)
                self.component_users_[role] = len(user_map)
            else:
                # Known users' new events still reach models that read their history.
                component.seen_ = sp.csr_matrix(seen[: self.component_users_[role]])

    # -- scoring ---------------------------------------------------------------------------
    def _component_scores(
        self, role: str, users: npt.NDArray[np.int64], mask: npt.NDArray[np.bool_] | None
    ) -> npt.NDArray[np.float64]:
        """Raw scores of one component; rows of NaN (no opinion) for users it cannot score."""
        component = self.components_[role]
        n_items = len(self._fitted()[1])
        if component.name in _USER_INDEPENDENT:
            users = np.zeros_like(users)
        known = users < self.component_users_[role]
        if known.all():  # every user (always, for one request): no NaN rows to fill in
            if isinstance(component, _Ensemble):
                return component._blend(users, mask)
            return np.asarray(component._score(users), dtype=np.float64)
        out = np.full((len(users), n_items), np.nan)
        if known.any():
            inner = mask[known] if mask is not None and mask.ndim == 2 else mask
            if isinstance(component, _Ensemble):
                out[known] = component._blend(users[known], inner)
            else:
                out[known] = component._score(users[known])
        return out

    def _score(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Normalised over the whole catalogue (``recommend`` normalises over allowed items)."""
        return np.asarray(self._blend(users, None), dtype=np.float32)

    def _ranking_scores(
        self,
        users: npt.NDArray[np.int64],
        allowed: npt.NDArray[np.bool_] | None,
        exclude_seen: bool,
        boost: npt.NDArray[np.float64] | None,
    ) -> npt.NDArray[np.float32]:
        """Blended scores, each component normalised over the items that may be returned
        (allowed and unseen), plus the boosts; ``-inf`` elsewhere."""
        _, items, seen = self._fitted()
        out = np.empty((len(users), len(items)), dtype=np.float32)
        for start in range(0, len(users), CHUNK_USERS):
            chunk = users[start : start + CHUNK_USERS]
            mask = np.ones((len(chunk), len(items)), dtype=bool)
            if allowed is not None:
                mask &= allowed
            if exclude_seen:
                mask[seen_entries(seen, chunk)] = False
            blended = self._blend(chunk, mask)
            if boost is not None:
                blended += boost
            blended[~mask] = -np.inf
            # float32 like every other model's scores, so ties break the same way
            out[start : start + len(chunk)] = blended
        return out

    def copy(self) -> Self:
        clone = super().copy()
        clone.components_ = {role: part.copy() for role, part in self.components_.items()}
        clone.component_users_ = dict(self.component_users_)
        return clone

    def _similar(self, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        able = {
            role: component
            for role, component in self.components_.items()
            if component.abilities.similar_items
        }
        if not able:
            raise ModelError(f"model '{self.name}': none of its components finds similar items")
        mask = np.ones((len(items), len(self._fitted()[1])), dtype=bool)
        mask[np.arange(len(items)), items] = False
        rows: list[npt.NDArray[np.float32]] = []
        weights: list[float] = []
        for role, component in able.items():
            try:
                rows.append(component._similar(items))
            except ModelError:  # an ensemble component whose own parts cannot
                continue
            weights.append(self._weight(role))
        if not rows:
            raise ModelError(f"model '{self.name}': none of its components finds similar items")
        return np.asarray(blend_scores(rows, weights, mask, self._method()), dtype=np.float32)

    def _weight(self, role: str) -> float:
        """The blend weight of a component (in scores and similar items)."""
        return 1.0

    def _method(self) -> Normalise:
        method: Normalise = getattr(self.params, "normalise", "minmax")
        return method

    # -- queries -------------------------------------------------------------------------
    def _query_scores(
        self, query: Query, boost: npt.NDArray[np.float64] | None
    ) -> QueryScores | None:
        """Text and stated preferences go to the content component (a basket alone goes to
        the shared route, by this blend's item similarity)."""
        content = self.content_component()
        if content is None or (query.text is None and not query.preferences):
            return None
        found = content._query_scores(query, None)
        if found is None or boost is None:
            return found
        scores = normalise_scores(found.scores[None, :], None, self._method())[0] + boost
        return QueryScores(scores.astype(np.float32), found.source, found.allowed)

    def content_component(self) -> ContentModel | None:
        """The ``content`` model inside this ensemble (searched depth first), if any."""
        for component in self.components_.values():
            if isinstance(component, ContentModel):
                return component
            if isinstance(component, _Ensemble):
                found = component.content_component()
                if found is not None:
                    return found
        return None

    def explain(
        self, item: object, *, user: object | None = None, query: QueryText | None = None
    ) -> list[str]:
        """Reasons from the content component (see :meth:`ContentModel.explain`); without
        one, the user's most similar history items (see :meth:`Recommender.explain`)."""
        self._fitted()
        content = self.content_component()
        if content is None:
            return super().explain(item, user=user, query=query)
        return content.explain(item, user=user, query=query)

    # -- saving ----------------------------------------------------------------------------
    def _state(self) -> dict[str, npt.NDArray[Any]]:
        roles = list(self.components_)
        arrays: dict[str, npt.NDArray[Any]] = {
            "roles": np.asarray(roles, dtype=np.str_),
            "component_users": np.asarray(
                [self.component_users_[role] for role in roles], dtype=np.int64
            ),
        }
        for role, component in self.components_.items():
            for key, value in component._state().items():
                arrays[f"{role}__{key}"] = value
        return arrays

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        user_map, item_map, seen = self._fitted()
        self.components_ = {}
        self.component_users_ = {}
        roles = [str(role) for role in arrays["roles"].tolist()]
        for role, n_users in zip(roles, arrays["component_users"].tolist(), strict=True):
            name, role_params = self._role_spec(role)
            component = create_model(name, **role_params)
            component.users_ = (
                user_map
                if n_users == len(user_map)
                else IdMap(list(user_map.external_ids[:n_users]), user_map.kind)
            )
            component.items_ = item_map
            component.seen_ = sp.csr_matrix(seen[:n_users])
            component.item_features_ = self.item_features_
            prefix = f"{role}__"
            component._set_state(
                {
                    key[len(prefix) :]: value
                    for key, value in arrays.items()
                    if key.startswith(prefix)
                }
            )
            self.components_[role] = component
            self.component_users_[role] = int(n_users)


# -- hybrid ----------------------------------------------------------------------------------
def _default_components() -> dict[str, float]:
    return {"als": 0.85, "content": 0.15}


class HybridParams(Params):
    components: dict[str, float] = Field(
        default_factory=_default_components,
        description="Registered model name -> blend weight (also accepts [[name, weight], ...]). "
        "A weight of 0 leaves the model out.",
    )
    component_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Model name -> that model's parameters."
    )
    normalise: Normalise = Field(
        default="minmax",
        description="How each component's scores are rescaled per user before blending.",
    )

    @field_validator("components", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            try:
                return {str(name): weight for name, weight in value}
            except (TypeError, ValueError):
                raise ValueError(
                    "components must be {name: weight} or [[name, weight], ...]"
                ) from None
        return value

    @model_validator(mode="after")
    def _check(self) -> HybridParams:
        if not self.components:
            raise ValueError("components must name at least one model")
        for name, weight in self.components.items():
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"weight of {name!r} must be a finite number >= 0, got {weight}")
            if name == "hybrid":
                raise ValueError("a hybrid cannot contain itself")
            get_model_class(name)  # unknown names fail here, listing the known ones
        if not any(weight > 0 for weight in self.components.values()):
            raise ValueError("at least one component weight must be above 0")
        unknown = set(self.component_params) - set(self.components)
        if unknown:
            raise ValueError(f"component_params for models not in components: {sorted(unknown)}")
        return self


@register
class Hybrid(_Ensemble):
    """A weighted blend of registered models' normalised scores.

    The default blends ``als`` (0.85) with ``content`` (0.15), models of every install: on
    MovieLens-100K (NDCG@10 0.442, ALS alone 0.444) and the demo shop (0.172, ALS alone 0.170)
    it keeps ALS's accuracy while content adds the items' features; with default components
    and no item features it is ALS alone. Other blends through ``components``, e.g.
    ``{"ease": 0.7, "content": 0.3}``.
    """

    name = "hybrid"
    Params = HybridParams
    params: HybridParams

    def _planned_roles(self) -> list[str]:
        return [name for name, weight in self.params.components.items() if weight > 0]

    def _roles(self, dataset: Dataset) -> list[str]:
        roles = self._planned_roles()
        if "components" not in self.params.model_fields_set and dataset.item_features is None:
            # The default blend on data without item features: nothing for content to read.
            roles = [role for role in roles if role != "content"]
        return roles

    def _role_spec(self, role: str) -> tuple[str, dict[str, Any]]:
        return role, dict(self.params.component_params.get(role, {}))

    def _weight(self, role: str) -> float:
        return self.params.components[role]


# -- fallback --------------------------------------------------------------------------------
PRIMARY, CONTENT, DEMOGRAPHIC, POPULARITY = "primary", "content", "demographic", "popularity"
_ROUTES = (PRIMARY, CONTENT, DEMOGRAPHIC, POPULARITY)
#: Quantile bins of numeric user features (age...) for the demographic step.
N_BINS = 5


class FallbackParams(Params):
    primary: str = Field(
        default="hybrid",
        description="Registered model for users with at least min_interactions events.",
    )
    primary_params: dict[str, Any] = Field(
        default_factory=dict, description="Parameters of the primary model."
    )
    content_params: dict[str, Any] = Field(
        default_factory=dict, description="Parameters of the content model for thin histories."
    )
    min_interactions: int = Field(
        default=5, ge=1, description="Distinct items a user needs before the primary model serves."
    )
    demographic_prior: float = Field(
        default=10.0,
        ge=0,
        description="Users' worth of overall popularity mixed into each user-feature group's "
        "popularity (smooths small groups).",
    )
    max_distinct_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Skip categorical user features with more distinct labels than this share "
        "of users (ids, zip codes).",
    )
    normalise: Normalise = Field(
        default="minmax", description="How scores are rescaled per user before boosts apply."
    )

    @model_validator(mode="after")
    def _check(self) -> FallbackParams:
        if self.primary == "fallback":
            raise ValueError("a fallback cannot be its own primary model")
        get_model_class(self.primary)
        return self


class _Demographics:
    """Popularity within groups of users sharing a user feature (country, age quintile...)."""

    def __init__(
        self,
        columns: npt.NDArray[np.str_],
        edges: npt.NDArray[np.float64],
        label_columns: npt.NDArray[np.str_],
        label_keys: npt.NDArray[np.str_],
        user_labels: npt.NDArray[np.int32],
        label_scores: npt.NDArray[np.float32],
    ) -> None:
        self.columns = columns  # one per column; numeric ones have a row of edges, others NaN
        self.edges = edges
        self.label_columns = label_columns
        self.label_keys = label_keys
        self.user_labels = user_labels  # (n_users, n_columns) label index or -1
        self.label_scores = label_scores  # (n_labels, n_items)
        self.index = {
            (column, key): position
            for position, (column, key) in enumerate(
                zip(label_columns.tolist(), label_keys.tolist(), strict=True)
            )
        }

    @classmethod
    def fit(cls, dataset: Dataset, prior: float, max_share: float) -> _Demographics | None:
        features = dataset.user_features
        if features is None:
            return None
        frame = features.frame
        counts = np.bincount(dataset.interactions["user"].to_numpy(), minlength=dataset.n_users)
        active = counts > 0
        columns: list[str] = []
        edges: list[npt.NDArray[np.float64]] = []
        codes: list[npt.NDArray[np.int32]] = []
        label_columns: list[str] = []
        label_keys: list[str] = []
        for column, kind in features.kinds.items():
            if kind == "categorical":
                keys = np.asarray(
                    [
                        "" if value is None else str(value).strip().casefold()
                        for value in frame[column]
                    ],
                    dtype=object,
                )
                present = keys != ""
                distinct = sorted(set(keys[present & active].tolist()))
                if not distinct or len(distinct) > max(
                    20.0, max_share * int((present & active).sum())
                ):
                    continue
                lookup = {key: position for position, key in enumerate(distinct)}
                code = np.asarray([lookup.get(key, -1) for key in keys.tolist()], dtype=np.int32)
                bounds = np.full(N_BINS - 1, np.nan)
            elif kind == "numeric":
                values = frame[column].to_numpy(dtype=np.float64)
                usable = np.isfinite(values) & active
                if usable.sum() < N_BINS or values[usable].min() == values[usable].max():
                    continue
                bounds = np.quantile(values[usable], np.linspace(0, 1, N_BINS + 1)[1:-1])
                distinct = [str(position) for position in range(N_BINS)]
                code = np.where(
                    np.isfinite(values), np.searchsorted(bounds, values, side="right"), -1
                ).astype(np.int32)
            else:
                continue
            offset = len(label_keys)
            columns.append(column)
            edges.append(np.asarray(bounds, dtype=np.float64))
            codes.append(np.where(code >= 0, code + offset, -1).astype(np.int32))
            label_columns.extend([column] * len(distinct))
            label_keys.extend(distinct)
        if not columns:
            return None
        user_labels = np.column_stack(codes).astype(np.int32)
        seen = sp.csr_matrix(dataset.matrix)
        binary = sp.csr_matrix(
            (np.ones(seen.nnz, dtype=np.float32), seen.indices, seen.indptr), shape=seen.shape
        )
        overall = np.asarray(binary.sum(axis=0)).ravel() / max(int(active.sum()), 1)
        # label x user incidence of the users with events (the groups whose tastes we know)
        members, slots = np.nonzero((user_labels >= 0) & active[:, None])
        membership = sp.csr_matrix(
            (
                np.ones(len(members), dtype=np.float32),
                (user_labels[members, slots], members),
            ),
            shape=(len(label_keys), dataset.n_users),
        )
        group_counts = np.asarray((membership @ binary).todense(), dtype=np.float64)
        group_sizes = np.asarray(membership.sum(axis=1), dtype=np.float64)
        scores = (group_counts + prior * overall) / np.maximum(group_sizes + prior, 1e-12)
        return cls(
            np.asarray(columns, dtype=np.str_),
            np.asarray(edges, dtype=np.float64).reshape(len(columns), N_BINS - 1),
            np.asarray(label_columns, dtype=np.str_),
            np.asarray(label_keys, dtype=np.str_),
            user_labels,
            scores.astype(np.float32),
        )

    def to_arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {
            "demographic_columns": self.columns,
            "demographic_edges": self.edges,
            "demographic_label_columns": self.label_columns,
            "demographic_label_keys": self.label_keys,
            "demographic_user_labels": self.user_labels,
            "demographic_label_scores": self.label_scores,
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, npt.NDArray[Any]]) -> _Demographics | None:
        if "demographic_columns" not in arrays:
            return None
        return cls(
            arrays["demographic_columns"].astype(np.str_),
            arrays["demographic_edges"].astype(np.float64),
            arrays["demographic_label_columns"].astype(np.str_),
            arrays["demographic_label_keys"].astype(np.str_),
            arrays["demographic_user_labels"].astype(np.int32),
            arrays["demographic_label_scores"].astype(np.float32),
        )

    def has_labels(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        inside = users < len(self.user_labels)
        out = np.zeros(len(users), dtype=bool)
        out[inside] = (self.user_labels[users[inside]] >= 0).any(axis=1)
        return out

    def scores_of(self, labels: Sequence[int]) -> npt.NDArray[np.float64]:
        return np.asarray(self.label_scores[list(labels)].mean(axis=0), dtype=np.float64)

    def user_scores(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """Mean group popularity of each user's labels (users must have labels)."""
        return np.stack(
            [self.scores_of([int(x) for x in self.user_labels[u] if x >= 0]) for u in users]
        )

    def labels_of(self, preferences: Mapping[str, Any]) -> list[int]:
        """Labels named by a mapping of user feature -> value (unknown values are ignored)."""
        found: list[int] = []
        columns = self.columns.tolist()
        for name, value in preferences.items():
            if name not in columns:
                continue
            position = columns.index(name)
            bounds = self.edges[position]
            if np.isnan(bounds).all():
                key = str(value).strip().casefold()
            else:
                try:
                    key = str(int(np.searchsorted(bounds, float(value), side="right")))
                except (TypeError, ValueError):
                    raise DataError(f"user feature {name!r} is numeric; got {value!r}") from None
            label = self.index.get((name, key))
            if label is not None:
                found.append(label)
        return found


@register
class Fallback(_Ensemble):
    """Serves everyone, whatever their history, with the best model that can.

    Per user: the ``primary`` model when they have at least ``min_interactions`` distinct items
    (and the primary model knows them); ``content`` (their profile of item features) when they
    have fewer; with no events at all, the popularity of items among users sharing their user
    features (``demographic``: categorical features and quintiles of numeric ones), or overall
    ``popularity``. People the model has never seen are served by
    :meth:`~Recommender.rank_query` from free text and stated preferences. The content
    step is skipped when the data has no item features.
    """

    name = "fallback"
    Params = FallbackParams
    params: FallbackParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.demographics_: _Demographics | None = None

    def _planned_roles(self) -> list[str]:
        return [PRIMARY, CONTENT, POPULARITY]

    def _roles(self, dataset: Dataset) -> list[str]:
        return [PRIMARY, *([CONTENT] if dataset.item_features is not None else []), POPULARITY]

    def _role_spec(self, role: str) -> tuple[str, dict[str, Any]]:
        if role == PRIMARY:
            return self.params.primary, dict(self.params.primary_params)
        if role == CONTENT:
            return "content", dict(self.params.content_params)
        return "popularity", {}

    def _fit(self, dataset: Dataset) -> None:
        super()._fit(dataset)
        self.demographics_ = _Demographics.fit(
            dataset, self.params.demographic_prior, self.params.max_distinct_share
        )

    # -- routing ---------------------------------------------------------------------------
    def _routes(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.str_]:
        _, _, seen = self._fitted()
        counts = np.diff(seen.indptr)[users]
        primary_ok = users < self.component_users_[PRIMARY]
        content_ok = (
            users < self.component_users_[CONTENT]
            if CONTENT in self.components_
            else np.zeros(len(users), dtype=bool)
        )
        demographic_ok = (
            self.demographics_.has_labels(users)
            if self.demographics_ is not None
            else np.zeros(len(users), dtype=bool)
        )
        route = np.full(len(users), POPULARITY, dtype="<U11")
        few = counts > 0
        route[few & primary_ok] = PRIMARY
        route[few & (counts < self.params.min_interactions) & content_ok] = CONTENT
        route[few & ~primary_ok & content_ok] = CONTENT
        route[~few & demographic_ok] = DEMOGRAPHIC
        return route

    def route_of(self, users: Sequence[object]) -> list[str]:
        """Which step serves each user: primary, content, demographic or popularity."""
        user_map, _, _ = self._fitted()
        return [str(r) for r in self._routes(user_map.to_index(users, what="user")).tolist()]

    def _blend(
        self, users: npt.NDArray[np.int64], mask: npt.NDArray[np.bool_] | None
    ) -> npt.NDArray[np.float64]:
        routes = self._routes(users)
        out = np.zeros((len(users), len(self._fitted()[1])), dtype=np.float64)
        for route in _ROUTES:
            chosen = np.flatnonzero(routes == route)
            if not len(chosen):
                continue
            inner = mask[chosen] if mask is not None else None
            if route == DEMOGRAPHIC:
                assert self.demographics_ is not None
                raw = self.demographics_.user_scores(users[chosen])
            else:
                raw = self._component_scores(route, users[chosen], inner)
            out[chosen] = normalise_scores(raw, inner, self.params.normalise)
        return out

    def _similar(self, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        for role in (PRIMARY, CONTENT):
            component = self.components_.get(role)
            if component is not None and component.abilities.similar_items:
                try:
                    return component._similar(items)
                except ModelError:
                    continue
        raise ModelError(f"model '{self.name}': none of its components finds similar items")

    # -- people the model has never seen ---------------------------------------------------
    def _query_scores(
        self, query: Query, boost: npt.NDArray[np.float64] | None
    ) -> QueryScores | None:
        """Someone with no history: free text and item features go to the content model
        (see :class:`ContentModel`), user features to the popularity among similar users
        (``demographic``); the first step that understands the query serves, else overall
        ``popularity``. Keys that are neither item nor user features raise
        :class:`DataError`. A basket alone goes to the shared basket route."""
        if query.text is None and not query.preferences and not query.user_features:
            return None
        wanted: dict[str, Any] = {**(query.preferences or {}), **(query.user_features or {})}
        if query.text is not None:
            wanted["text"] = query.text
        source, raw = self._cold_scores(wanted)
        scores = normalise_scores(raw[None, :], None, self.params.normalise)[0]
        if boost is not None:
            scores = scores + boost
        return QueryScores(scores.astype(np.float32), source)

    def _cold_scores(self, preferences: QueryText | None) -> tuple[str, npt.NDArray[np.float64]]:
        content = self.components_.get(CONTENT)
        item_part: QueryText | None = None
        user_part: dict[str, Any] = {}
        if isinstance(preferences, str):
            item_part = preferences
        elif isinstance(preferences, Mapping):
            item_columns = (
                set(self.item_features_.kinds) if self.item_features_ is not None else set()
            )
            user_columns = (
                set(self.demographics_.columns.tolist())
                if self.demographics_ is not None
                else set()
            )
            unknown = set(preferences) - item_columns - user_columns - {"text"}
            if unknown:
                known = sorted(item_columns | user_columns | {"text"})
                raise DataError(
                    f"preferences name unknown features {sorted(unknown)} (known: {known})"
                )
            items = {k: v for k, v in preferences.items() if k in item_columns or k == "text"}
            item_part = items or None
            user_part = {k: v for k, v in preferences.items() if k in user_columns}
        elif preferences is not None:
            raise DataError(f"preferences must be text or a mapping, got {preferences!r}")
        if item_part is not None and isinstance(content, ContentModel):
            try:
                return CONTENT, np.asarray(content.query_scores(item_part), dtype=np.float64)
            except DataError:
                pass  # nothing matched: try the next step rather than fail
        if user_part and self.demographics_ is not None:
            labels = self.demographics_.labels_of(user_part)
            if labels:
                return DEMOGRAPHIC, self.demographics_.scores_of(labels)
        popularity = self.components_[POPULARITY]
        return POPULARITY, np.asarray(
            popularity._score(np.zeros(1, dtype=np.int64))[0], dtype=np.float64
        )

    # -- saving and folding in -------------------------------------------------------------
    def _refresh_users(self, users: npt.NDArray[np.int64]) -> None:
        super()._refresh_users(users)
        if self.demographics_ is not None:
            n_users = len(self._fitted()[0])
            labels = self.demographics_.user_labels
            if len(labels) < n_users:  # users added later have no features
                grown = np.full((n_users, labels.shape[1]), -1, dtype=np.int32)
                grown[: len(labels)] = labels
                self.demographics_.user_labels = grown

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        arrays = super()._state()
        if self.demographics_ is not None:
            arrays.update(self.demographics_.to_arrays())
        return arrays

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        super()._set_state(arrays)
        self.demographics_ = _Demographics.from_arrays(arrays)
