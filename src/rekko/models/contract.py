"""What a model hands to the exporters: a declared contract, not attribute names.

:meth:`Recommender.export_contract <rekko.models.base.Recommender.export_contract>` returns an
:class:`ExportContract`, or ``None`` for a model that cannot be exported. The exporters
(:mod:`rekko.export`) read only the contract, so a model that fills it in exports without the
exporters knowing its class. Nothing here imports TensorFlow: a :class:`Network` holds a Keras
model built by the model itself.

The dataclasses check their own shapes and dtypes when built; the conformance suite checks that
they agree with the model's users and items.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from rekko.errors import ModelError

#: What a score is: a relevance ``"score"`` with no scale (a dot product), a predicted
#: ``"rating"``, a ``"logit"`` or a ``"probability"`` of an interaction.
ScoreKind = Literal["score", "rating", "logit", "probability"]
SCORE_KINDS: tuple[ScoreKind, ...] = ("score", "rating", "logit", "probability")


@dataclass(frozen=True)
class Embeddings:
    """Scores are ``user_vectors @ item_vectors.T + offset``.

    Attributes:
        user_vectors: float32 (n_users, dim), row n for user index n.
        item_vectors: float32 (n_items, dim), row n for item index n.
        fallback: float32 (dim,): the vector of a user the model does not know.
        offset: added to every score (0 when the vectors hold it already).
        score: what the scores are.
    """

    user_vectors: npt.NDArray[np.float32]
    item_vectors: npt.NDArray[np.float32]
    fallback: npt.NDArray[np.float32]
    offset: float = 0.0
    score: ScoreKind = "score"

    def __post_init__(self) -> None:
        named = (
            ("user_vectors", self.user_vectors),
            ("item_vectors", self.item_vectors),
            ("fallback", self.fallback),
        )
        for name, array in named:
            if not isinstance(array, np.ndarray) or array.dtype != np.float32:
                raise ModelError(f"export contract: {name} must be a float32 array")
        if self.user_vectors.ndim != 2 or self.item_vectors.ndim != 2:
            raise ModelError("export contract: user_vectors and item_vectors must be 2-D")
        if self.user_vectors.shape[1] != self.item_vectors.shape[1]:
            raise ModelError(
                f"export contract: user vectors have {self.user_vectors.shape[1]} columns, "
                f"item vectors {self.item_vectors.shape[1]}"
            )
        if self.fallback.shape != (self.dim,):
            raise ModelError(
                f"export contract: fallback must have shape ({self.dim},), got "
                f"{self.fallback.shape}"
            )
        if self.score not in SCORE_KINDS:
            raise ModelError(f"export contract: score must be one of {SCORE_KINDS}")

    @property
    def dim(self) -> int:
        return int(self.item_vectors.shape[1])


@dataclass(frozen=True)
class Network:
    """A Keras model: a dict of named input arrays -> one output row per input row.

    Attributes:
        model: the ``keras.Model``.
        example: real inputs (a few rows of each), to check a converted file against Keras.
        inputs: per input name, what it holds (written to export manifests).
        ragged: inputs whose second dimension varies from call to call (bags of codes).
    """

    model: Any
    example: Mapping[str, npt.NDArray[Any]]
    inputs: Mapping[str, Mapping[str, Any]]
    ragged: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if set(self.example) != set(self.inputs):
            raise ModelError(
                f"export contract: example inputs {sorted(self.example)} do not match the "
                f"described inputs {sorted(self.inputs)}"
            )
        rows = {len(array) for array in self.example.values()}
        if len(rows) > 1:
            raise ModelError("export contract: example inputs must have one number of rows")
        if not self.ragged <= set(self.inputs):
            raise ModelError(f"export contract: ragged inputs {sorted(self.ragged)} are unknown")


@dataclass(frozen=True)
class SideInputs:
    """What a pair network reads for each user (or item) index, for in-graph lookups.

    Attributes:
        id_input: the network's id input; it reads ``index + 1`` for an index with a trained
            id embedding and 0 (the unknown id) otherwise.
        codes: the network's other inputs of this side: input name -> one row per index.
        trained: bool per index: whether the index has a trained id embedding.
    """

    id_input: str
    codes: Mapping[str, npt.NDArray[Any]]
    trained: npt.NDArray[np.bool_]

    def __post_init__(self) -> None:
        if self.trained.dtype != np.bool_ or self.trained.ndim != 1:
            raise ModelError("export contract: trained must be a 1-D bool array")
        for name, array in self.codes.items():
            if len(array) != len(self.trained):
                raise ModelError(
                    f"export contract: {name} has {len(array)} rows, expected {len(self.trained)}"
                )

    def __len__(self) -> int:
        return len(self.trained)


@dataclass(frozen=True)
class PairScorer:
    """A network scoring (user, item) pairs: ``score`` follows from its raw output.

    ``"rating"``: ``raw + offset``; ``"probability"``: ``sigmoid(raw)``; ``"logit"`` and
    ``"score"``: ``raw``. The network's inputs are the two sides' ``id_input`` and ``codes``.
    """

    network: Network
    users: SideInputs
    items: SideInputs
    score: ScoreKind
    offset: float = 0.0

    def __post_init__(self) -> None:
        if self.score not in SCORE_KINDS:
            raise ModelError(f"export contract: score must be one of {SCORE_KINDS}")
        names = {self.users.id_input, self.items.id_input, *self.users.codes, *self.items.codes}
        if names != set(self.network.inputs):
            raise ModelError(
                f"export contract: the pair network reads {sorted(self.network.inputs)}, the "
                f"side inputs give {sorted(names)}"
            )


@dataclass(frozen=True)
class ExportContract:
    """What the exporters may read of a model.

    Attributes:
        embeddings: user and item vectors whose dot products are the model's scores (retrieval
            SavedModel; TFLite item vectors).
        user_tower: the model's own user tower (TFLite), so a device computes a new user's
            vector; without it, the TFLite export looks up ``embeddings.user_vectors``.
        pair_scorer: a network scoring (user, item) pairs (ranking SavedModel and TFLite).
        vocabularies: labels of each feature input, by input name (code n is label n - 1,
            0 is unknown), for the manifest.
    """

    embeddings: Embeddings | None = None
    user_tower: Network | None = None
    pair_scorer: PairScorer | None = None
    vocabularies: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.embeddings is None and self.pair_scorer is None:
            raise ModelError("export contract: give embeddings, a pair scorer or both")
        if self.user_tower is not None and self.embeddings is None:
            raise ModelError("export contract: a user tower needs the item embeddings")
