"""Content-based recommendations from item features: TF-IDF text, attributes and numbers.

Every item becomes one sparse vector made of blocks:

* ``words``: TF-IDF of the item's text columns (word n-grams, sublinear tf);
* ``chars``: TF-IDF of character n-grams of the same text, which forgives typos and word forms
  (Indonesian affixes: "pedas" / "kepedasan");
* ``attributes``: one-hot categorical columns and multi-hot tag lists;
* ``numbers``: each numeric column turned into its quantile ``q`` in the catalogue and encoded
  as the unit vector ``(cos(pi q / 2), sin(pi q / 2))``, so the cosine of two items' prices is
  ``cos(pi/2 * |q1 - q2|)``: 1 for equal prices, 0 for the cheapest against the dearest.

Each block is L2-normalised and scaled by the square root of its weight, then every row is
L2-normalised again, so the cosine of two items is the weight-averaged cosine of their blocks.
Coordinates (``latitude`` / ``longitude`` columns) are not part of the vectors: use
:class:`~rekko.constraints.Within` filters or boosts for places.

A user's profile is the weighted mean of the vectors of the items they interacted with
(weights: interaction values, optionally decayed by age with ``half_life_days``); items are
scored by cosine with the profile. A free-text or attribute query is turned into a vector the
same way (:meth:`~Recommender.rank_query`), which serves people with no history at all.

Everything needed to vectorise a query after :meth:`~Recommender.load` (vocabularies, idf
weights, attribute labels, numeric quantiles) is saved as plain arrays: nothing is pickled.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from pydantic import Field, model_validator
from sklearn.feature_extraction.text import TfidfVectorizer, strip_accents_unicode
from sklearn.preprocessing import normalize

from rekko.data.dataset import Dataset, FeatureTable
from rekko.errors import DataError, ModelError
from rekko.models.base import Abilities, Params, Recommender
from rekko.models.query import Query, QueryScores
from rekko.models.registry import register

logger = logging.getLogger(__name__)

#: A query: free text, or a mapping of item feature column -> wanted value(s), where the key
#: ``"text"`` holds free text.
QueryText = str | Mapping[str, Any]

#: Points of the stored quantile curve of each numeric column.
N_QUANTILES = 101
#: Share of the popularity prior added to every cosine, so that ties go to popular items.
TIE_BREAK = 1e-4
#: Words shown per reason in :meth:`ContentModel.explain`.
MAX_WORDS = 5
#: Character n-gram cosine from which shared n-grams are a reason ("similar spelling"): a
#: typo of a word scores about 0.3 against it, a word merely sharing "ter" about 0.02.
SPELLING_COSINE = 0.2
#: Smoothed idf of a word found in half of the items: commoner words are no reason.
COMMON_IDF = 1.0 + math.log(2.0)
_TEXT_KEY = "text"
_BLOCKS = ("words", "chars", "attributes", "numbers")


class ContentParams(Params):
    columns: list[str] | None = Field(
        default=None,
        description="Item feature columns to use (default: every text, categorical, multi-valued "
        "and numeric column; coordinates are left to filters and boosts).",
    )
    text_weight: float = Field(default=1.0, ge=0, description="Weight of TF-IDF word n-grams.")
    char_weight: float = Field(
        default=0.5,
        ge=0,
        description="Weight of TF-IDF character n-grams of the same text (typos, word forms); "
        "0 turns them off.",
    )
    category_weight: float = Field(
        default=1.0, ge=0, description="Weight of categorical and multi-valued (tag) columns."
    )
    numeric_weight: float = Field(
        default=0.25, ge=0, description="Weight of numeric columns (compared by quantile)."
    )
    word_ngrams: int = Field(default=1, ge=1, le=3, description="Longest word n-gram.")
    char_ngram_range: tuple[int, int] = Field(
        default=(3, 5), description="Shortest and longest character n-gram (within words)."
    )
    min_df: int = Field(
        default=1, ge=1, description="Ignore words and n-grams found in fewer items than this."
    )
    max_features: int | None = Field(
        default=100_000, ge=1, description="Keep at most this many words (and n-grams) each."
    )
    max_distinct_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Skip categorical columns with more distinct labels than this share of the "
        "items that have one (names, URLs): they single items out instead of grouping them.",
    )
    half_life_days: float | None = Field(
        default=None,
        gt=0,
        description="Halve the weight of an interaction every N days before the newest one "
        "(needs timestamps; events added later with add_interactions are not decayed).",
    )

    @model_validator(mode="after")
    def _check(self) -> ContentParams:
        low, high = self.char_ngram_range
        if not 1 <= low <= high:
            raise ValueError(
                f"char_ngram_range must be (low, high) with 1 <= low <= high, got "
                f"{self.char_ngram_range}"
            )
        weights = (self.text_weight, self.char_weight, self.category_weight, self.numeric_weight)
        if not any(weight > 0 for weight in weights):
            raise ValueError("at least one of the block weights must be above 0")
        return self


def _tokens(text: str) -> list[str]:
    """Lower-cased, accent-free word tokens with a crude plural strip ("logos" -> "logo")."""
    words = re.findall(r"\w+", strip_accents_unicode(text.casefold()))
    return [word[:-1] if len(word) > 3 and word.endswith("s") else word for word in words]


def _label_key(value: object) -> str:
    """How attribute labels compare: as :mod:`rekko.constraints` does (case, outer spaces)."""
    return str(value).strip().casefold()


def _contains(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    """Whether ``needle`` occurs as a run of consecutive tokens in ``haystack``."""
    width = len(needle)
    if width == 0 or width > len(haystack):
        return False
    return any(
        list(haystack[start : start + width]) == list(needle)
        for start in range(len(haystack) - width + 1)
    )


def _angle(
    quantiles: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    return np.cos(quantiles * np.pi / 2), np.sin(quantiles * np.pi / 2)


@dataclass
class _QueryParts:
    """What a query asks for, split by block."""

    text: str = ""
    labels: tuple[tuple[str, str], ...] = ()  # (column, label key)
    numbers: tuple[tuple[str, float], ...] = ()


class _Vectoriser:
    """Turns item features and queries into the model's sparse vectors.

    Built from plain arrays (:meth:`from_arrays`), which is also how it is saved, so a loaded
    model vectorises queries exactly as the trained one did.
    """

    def __init__(
        self,
        params: ContentParams,
        text_columns: list[str],
        word_terms: npt.NDArray[np.str_],
        word_idf: npt.NDArray[np.floating[Any]],
        char_terms: npt.NDArray[np.str_],
        char_idf: npt.NDArray[np.floating[Any]],
        attribute_columns: npt.NDArray[np.str_],
        attribute_keys: npt.NDArray[np.str_],
        attribute_labels: npt.NDArray[np.str_],
        numeric_columns: npt.NDArray[np.str_],
        numeric_quantiles: npt.NDArray[np.float64],
    ) -> None:
        self.params = params
        self.text_columns = text_columns
        self.word_terms = word_terms
        self.word_idf = word_idf
        self.char_terms = char_terms
        self.char_idf = char_idf
        self.attribute_columns = attribute_columns
        self.attribute_keys = attribute_keys
        self.attribute_labels = attribute_labels
        self.numeric_columns = numeric_columns
        self.numeric_quantiles = numeric_quantiles
        self.words = self._tfidf("word", word_terms, word_idf)
        self.chars = self._tfidf("char_wb", char_terms, char_idf)
        self.attribute_index = {
            (column, key): position
            for position, (column, key) in enumerate(
                zip(attribute_columns.tolist(), attribute_keys.tolist(), strict=True)
            )
        }
        self.attribute_columns_used = list(dict.fromkeys(attribute_columns.tolist()))
        # Label phrases that free text can name ("hand drawn", "logos"), as token tuples.
        self.phrases = [
            (column, key, tuple(_tokens(key)))
            for column, key in zip(attribute_columns.tolist(), attribute_keys.tolist(), strict=True)
            if len(key) >= 2
        ]
        sizes = [len(word_terms), len(char_terms), len(attribute_keys), 2 * len(numeric_columns)]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        weights = (
            params.text_weight,
            params.char_weight,
            params.category_weight,
            params.numeric_weight,
        )
        self.scales = [math.sqrt(weight) for weight in weights]

    # -- building --------------------------------------------------------------------------
    def _tfidf(
        self, analyzer: str, terms: npt.NDArray[np.str_], idf: npt.NDArray[np.floating[Any]]
    ) -> TfidfVectorizer | None:
        if len(terms) == 0:
            return None
        ngrams = (
            (1, self.params.word_ngrams) if analyzer == "word" else self.params.char_ngram_range
        )
        vectoriser = TfidfVectorizer(
            analyzer=analyzer,
            ngram_range=ngrams,
            lowercase=True,
            strip_accents="unicode",
            sublinear_tf=True,
            dtype=np.float32,
            vocabulary={term: index for index, term in enumerate(terms.tolist())},
        )
        vectoriser.idf_ = idf
        return vectoriser

    @classmethod
    def fit(
        cls, params: ContentParams, features: FeatureTable
    ) -> tuple[_Vectoriser, sp.csr_matrix]:
        """The vectoriser learnt from the catalogue, and the catalogue's item vectors."""
        columns = _columns(params, features)
        frame = features.frame
        text_columns = [c for c in columns if features.kinds[c] == "text"]
        documents = _documents(frame, text_columns)
        word_terms, word_idf, word_block = _fit_tfidf(
            params, "word", (1, params.word_ngrams), documents, params.text_weight
        )
        char_terms, char_idf, char_block = _fit_tfidf(
            params, "char_wb", params.char_ngram_range, documents, params.char_weight
        )
        attribute_columns: list[str] = []
        attribute_keys: list[str] = []
        attribute_labels: list[str] = []
        if params.category_weight > 0:
            for column in columns:
                kind = features.kinds[column]
                if kind not in ("categorical", "multi"):
                    continue
                labels: dict[str, str] = {}
                present = 0
                for value in frame[column]:
                    values = value if kind == "multi" else (() if value is None else (value,))
                    present += bool(values)
                    for label in values:
                        labels.setdefault(_label_key(label), str(label).strip())
                if kind == "categorical" and len(labels) > max(
                    20.0, params.max_distinct_share * present
                ):
                    logger.info(
                        "content: column %r skipped (%d distinct labels in %d items look like "
                        "names, not kinds)",
                        column,
                        len(labels),
                        present,
                    )
                    continue
                for key in sorted(labels):
                    attribute_columns.append(column)
                    attribute_keys.append(key)
                    attribute_labels.append(labels[key])
        numeric_columns: list[str] = []
        quantiles: list[npt.NDArray[np.float64]] = []
        if params.numeric_weight > 0:
            for column in columns:
                if features.kinds[column] != "numeric":
                    continue
                values = frame[column].to_numpy(dtype=np.float64)
                values = values[np.isfinite(values)]
                if len(values) == 0 or values.min() == values.max():
                    continue
                numeric_columns.append(column)
                quantiles.append(np.quantile(values, np.linspace(0, 1, N_QUANTILES)))
        vectoriser = cls(
            params,
            text_columns,
            word_terms,
            word_idf,
            char_terms,
            char_idf,
            np.asarray(attribute_columns, dtype=np.str_),
            np.asarray(attribute_keys, dtype=np.str_),
            np.asarray(attribute_labels, dtype=np.str_),
            np.asarray(numeric_columns, dtype=np.str_),
            np.asarray(quantiles, dtype=np.float64).reshape(len(numeric_columns), N_QUANTILES),
        )
        return vectoriser, vectoriser.items(features, [word_block, char_block])

    def to_arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {
            "text_columns": np.asarray(self.text_columns, dtype=np.str_),
            "word_terms": self.word_terms,
            "word_idf": self.word_idf,
            "char_terms": self.char_terms,
            "char_idf": self.char_idf,
            "attribute_columns": self.attribute_columns,
            "attribute_keys": self.attribute_keys,
            "attribute_labels": self.attribute_labels,
            "numeric_columns": self.numeric_columns,
            "numeric_quantiles": self.numeric_quantiles,
        }

    @classmethod
    def from_arrays(
        cls, params: ContentParams, arrays: Mapping[str, npt.NDArray[Any]]
    ) -> _Vectoriser:
        return cls(
            params,
            [str(c) for c in arrays["text_columns"].tolist()],
            arrays["word_terms"].astype(np.str_),
            arrays["word_idf"],
            arrays["char_terms"].astype(np.str_),
            arrays["char_idf"],
            arrays["attribute_columns"].astype(np.str_),
            arrays["attribute_keys"].astype(np.str_),
            arrays["attribute_labels"].astype(np.str_),
            arrays["numeric_columns"].astype(np.str_),
            arrays["numeric_quantiles"].astype(np.float64),
        )

    @property
    def n_features(self) -> int:
        return int(self.offsets[-1])

    # -- vectorising -----------------------------------------------------------------------
    def _combine(self, blocks: list[sp.csr_matrix]) -> sp.csr_matrix:
        scaled = [
            normalize(block, norm="l2", axis=1) * scale if block.shape[1] else block
            for block, scale in zip(blocks, self.scales, strict=True)
        ]
        matrix = sp.hstack(scaled, format="csr", dtype=np.float32)
        matrix = normalize(matrix, norm="l2", axis=1)
        matrix.eliminate_zeros()
        matrix.sort_indices()
        return sp.csr_matrix(matrix, dtype=np.float32)

    def _text_blocks(self, documents: list[str]) -> list[sp.csr_matrix]:
        blocks = []
        for vectoriser, terms in ((self.words, self.word_terms), (self.chars, self.char_terms)):
            if vectoriser is None:
                blocks.append(sp.csr_matrix((len(documents), len(terms)), dtype=np.float32))
            else:
                blocks.append(sp.csr_matrix(vectoriser.transform(documents), dtype=np.float32))
        return blocks

    def _numeric_block(self, values: npt.NDArray[np.float64]) -> sp.csr_matrix:
        """``values``: (rows, numeric columns), NaN where missing."""
        rows, n_columns = values.shape
        dense = np.zeros((rows, 2 * n_columns), dtype=np.float32)
        grid = np.linspace(0, 1, N_QUANTILES)
        for position in range(n_columns):
            column = values[:, position]
            present = np.isfinite(column)
            quantile = np.interp(column[present], self.numeric_quantiles[position], grid)
            cos, sin = _angle(quantile)
            dense[present, 2 * position] = cos
            dense[present, 2 * position + 1] = sin
        return sp.csr_matrix(dense)

    def items(
        self, features: FeatureTable, text_blocks: list[sp.csr_matrix] | None = None
    ) -> sp.csr_matrix:
        """Item vectors (``text_blocks``: the TF-IDF of the items' text, when already known)."""
        frame = features.frame
        n_items = len(frame)
        blocks = (
            list(text_blocks)
            if text_blocks is not None
            else self._text_blocks(_documents(frame, self.text_columns))
        )
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        for column in self.attribute_columns_used:
            multi = features.kinds[column] == "multi"
            for row, value in enumerate(frame[column]):
                values = value if multi else (() if value is None else (value,))
                found = [
                    self.attribute_index[(column, _label_key(label))]
                    for label in dict.fromkeys(values)
                    if (column, _label_key(label)) in self.attribute_index
                ]
                for position in found:
                    rows.append(row)
                    cols.append(position)
                    vals.append(1.0 / math.sqrt(len(found)))
        blocks.append(
            sp.csr_matrix(
                (np.asarray(vals, dtype=np.float32), (rows, cols)),
                shape=(n_items, len(self.attribute_keys)),
            )
        )
        numbers = (
            np.column_stack(
                [frame[c].to_numpy(dtype=np.float64) for c in self.numeric_columns.tolist()]
            )
            if len(self.numeric_columns)
            else np.zeros((n_items, 0))
        )
        blocks.append(self._numeric_block(numbers))
        return self._combine(blocks)

    def parse(self, query: QueryText, features: FeatureTable | None) -> _QueryParts:
        """Split a query into text, attribute labels and numbers; unknown columns raise."""
        if isinstance(query, str):
            return _QueryParts(text=query, labels=self._phrases_in(query))
        if not isinstance(query, Mapping):
            raise DataError(f"a query is text or a mapping of feature -> value, got {query!r}")
        text = ""
        labels: list[tuple[str, str]] = []
        numbers: list[tuple[str, float]] = []
        known = set(features.kinds) if features is not None else set()
        for name, wanted in query.items():
            if name == _TEXT_KEY:
                if not isinstance(wanted, str):
                    raise DataError(f"query 'text' must be a string, got {wanted!r}")
                text = wanted
                labels.extend(self._phrases_in(wanted))
                continue
            if name not in known or features is None:
                raise DataError(
                    f"query names unknown item feature {name!r} (known: "
                    f"{', '.join(sorted(known))}, or 'text' for free text)"
                )
            kind = features.kinds[name]
            values = (
                list(wanted)
                if isinstance(wanted, Sequence) and not isinstance(wanted, str)
                else [wanted]
            )
            if kind in ("categorical", "multi"):
                labels.extend((name, _label_key(value)) for value in values)
            elif kind == "numeric":
                for value in values:
                    try:
                        numbers.append((name, float(value)))
                    except (TypeError, ValueError):
                        raise DataError(
                            f"query value for numeric feature {name!r} must be a number, "
                            f"got {value!r}"
                        ) from None
            elif kind == "text":
                text = " ".join(filter(None, [text, *(str(value) for value in values)]))
                labels.extend(self._phrases_in(" ".join(str(value) for value in values)))
            else:
                raise DataError(
                    f"query on {name!r} ({kind}): use a 'near' filter or boost for places"
                )
        return _QueryParts(text, tuple(dict.fromkeys(labels)), tuple(numbers))

    def _phrases_in(self, text: str) -> tuple[tuple[str, str], ...]:
        words = _tokens(text)
        return tuple(
            (column, key) for column, key, phrase in self.phrases if _contains(words, phrase)
        )

    def query(self, parts: _QueryParts) -> sp.csr_matrix:
        """The query's vector, shape (1, n_features); all zero when nothing is known."""
        blocks = self._text_blocks([parts.text])
        positions = [
            self.attribute_index[label] for label in parts.labels if label in self.attribute_index
        ]
        attributes = np.zeros((1, len(self.attribute_keys)), dtype=np.float32)
        attributes[0, positions] = 1.0
        blocks.append(sp.csr_matrix(attributes))
        numbers = np.full((1, len(self.numeric_columns)), np.nan)
        column_list = self.numeric_columns.tolist()
        for name, value in parts.numbers:
            if name in column_list:
                numbers[0, column_list.index(name)] = value
        blocks.append(self._numeric_block(numbers))
        return self._combine(blocks)

    # -- reading vectors back --------------------------------------------------------------
    def block_of(self, feature: int) -> str:
        return _BLOCKS[int(np.searchsorted(self.offsets, feature, side="right")) - 1]

    def _spelling_cosine(self, subject: sp.csr_matrix, item: sp.csr_matrix) -> float:
        """Cosine of the two rows' character n-gram parts alone."""
        start, stop = int(self.offsets[1]), int(self.offsets[2])
        left, right = subject[:, start:stop], item[:, start:stop]
        norm = float(np.sqrt(left.multiply(left).sum() * right.multiply(right).sum()))
        return float(left.multiply(right).sum()) / norm if norm > 0 else 0.0

    def reasons(self, subject: sp.csr_matrix, item: sp.csr_matrix) -> list[str]:
        """Short reasons why ``item`` matches ``subject`` (both rows of shape (1, n))."""
        shared = subject.multiply(item).tocoo()
        contributions = dict(zip(shared.col.tolist(), shared.data.tolist(), strict=True))
        reasons: list[str] = []
        start, stop = self.offsets[2], self.offsets[3]
        attributes = sorted(
            (
                (value, feature)
                for feature, value in contributions.items()
                if start <= feature < stop and value > 0
            ),
            reverse=True,
        )
        for _, feature in attributes:
            position = feature - start
            reasons.append(f"{self.attribute_columns[position]}: {self.attribute_labels[position]}")
        start, stop = self.offsets[0], self.offsets[1]
        words = sorted(
            (
                (value, feature)
                for feature, value in contributions.items()
                if start <= feature < stop
                and value > 0
                and self.word_idf[feature - start] >= COMMON_IDF
            ),
            reverse=True,
        )[:MAX_WORDS]
        if words:
            reasons.append("words: " + ", ".join(str(self.word_terms[f - start]) for _, f in words))
        elif self._spelling_cosine(subject, item) >= SPELLING_COSINE:
            reasons.append("similar spelling")
        start = int(self.offsets[3])
        subject_dense = subject[:, start:].toarray().ravel()
        item_dense = item[:, start:].toarray().ravel()
        for position, column in enumerate(self.numeric_columns.tolist()):
            pair = slice(2 * position, 2 * position + 2)
            norm = float(np.linalg.norm(subject_dense[pair]) * np.linalg.norm(item_dense[pair]))
            if norm > 0 and float(subject_dense[pair] @ item_dense[pair]) / norm >= 0.99:
                reasons.append(f"{column}: similar")
        return reasons


def _columns(params: ContentParams, features: FeatureTable) -> list[str]:
    usable = ("text", "categorical", "multi", "numeric")
    if params.columns is None:
        return [c for c, kind in features.kinds.items() if kind in usable]
    for column in params.columns:
        if column not in features.kinds:
            raise ModelError(
                f"content: columns names unknown item feature {column!r} (known: "
                f"{', '.join(features.kinds)})"
            )
        if features.kinds[column] not in usable:
            raise ModelError(
                f"content: column {column!r} is {features.kinds[column]}; use text, categorical, "
                "multi or numeric columns (places go in filters and boosts)"
            )
    return list(params.columns)


def _documents(frame: pd.DataFrame, text_columns: list[str]) -> list[str]:
    if not text_columns:
        return [""] * len(frame)
    parts = [[("" if value is None else str(value)) for value in frame[c]] for c in text_columns]
    return [" ".join(filter(None, row)) for row in zip(*parts, strict=True)]


def _fit_tfidf(
    params: ContentParams,
    analyzer: str,
    ngrams: tuple[int, int],
    documents: list[str],
    weight: float,
) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.floating[Any]], sp.csr_matrix]:
    """Vocabulary, idf and TF-IDF matrix of ``documents`` (all empty when unused)."""
    empty = (
        np.asarray([], dtype=np.str_),
        np.asarray([], dtype=np.float32),
        sp.csr_matrix((len(documents), 0), dtype=np.float32),
    )
    if weight <= 0 or not any(documents):
        return empty
    vectoriser = TfidfVectorizer(
        analyzer=analyzer,
        ngram_range=ngrams,
        lowercase=True,
        strip_accents="unicode",
        sublinear_tf=True,
        dtype=np.float32,
        min_df=min(params.min_df, sum(1 for d in documents if d)),
        max_features=params.max_features,
    )
    try:
        matrix = vectoriser.fit_transform(documents)
    except ValueError:  # no words at all (only one-letter words, or pruned by min_df)
        return empty
    terms = np.asarray(vectoriser.get_feature_names_out(), dtype=np.str_)
    return terms, np.asarray(vectoriser.idf_), sp.csr_matrix(matrix, dtype=np.float32)


def _csr_arrays(prefix: str, matrix: sp.csr_matrix) -> dict[str, npt.NDArray[Any]]:
    return {
        f"{prefix}_indptr": matrix.indptr,
        f"{prefix}_indices": matrix.indices,
        f"{prefix}_data": matrix.data,
        f"{prefix}_shape": np.asarray(matrix.shape, dtype=np.int64),
    }


def _csr_from(prefix: str, arrays: Mapping[str, npt.NDArray[Any]]) -> sp.csr_matrix:
    return sp.csr_matrix(
        (arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]),
        shape=tuple(int(n) for n in arrays[f"{prefix}_shape"]),
        dtype=np.float32,
    )


@register
class ContentModel(Recommender):
    """Items like the ones a user liked, or like what a new user asks for.

    Needs an item feature table. Users are profiles in the item vector space (see the module
    docstring); unknown users are served by :meth:`~Recommender.rank_query` or by
    :meth:`~Recommender.add_interactions` (fold-in: the profile is recomputed from the user's
    accumulated events; recency decay is not applied to those recomputed profiles, as added
    events carry no timestamp). Items nobody interacted with are recommended like any other.
    Ties between equal cosines go to popular items (a prior of ``1e-4 x`` relative popularity).
    """

    name = "content"
    abilities = Abilities(
        cold_users=True, uses_features=True, fold_in=True, similar_items=True, queries=True
    )
    Params = ContentParams
    params: ContentParams

    # -- fitting ---------------------------------------------------------------------------
    def _fit(self, dataset: Dataset) -> None:
        features = dataset.item_features
        if features is None:
            raise ModelError(
                "content: needs an item feature table (Dataset.from_frame(item_features=...)) "
                "with text, categorical, multi-valued or numeric columns"
            )
        self.vectoriser_, self.item_vectors_ = _Vectoriser.fit(self.params, features)
        if self.vectoriser_.n_features == 0:
            raise ModelError(
                "content: the item features give nothing to compare (no words, no grouping "
                f"labels, no varying numbers in columns {_columns(self.params, features)})"
            )
        counts = np.bincount(dataset.interactions["item"].to_numpy(), minlength=dataset.n_items)
        self.prior_ = (TIE_BREAK * counts / max(int(counts.max()), 1)).astype(np.float32)
        weights = dataset.interactions["value"].to_numpy(dtype=np.float64)
        if self.params.half_life_days is not None:
            if dataset.has_timestamps:
                stamps = dataset.interactions["timestamp"].to_numpy(dtype=np.float64)
                age_days = (stamps.max() - stamps) / 86_400.0
                weights = weights * np.power(0.5, age_days / self.params.half_life_days)
            else:
                logger.info("content: half_life_days ignored (the data has no timestamps)")
        matrix = sp.csr_matrix(
            (
                weights.astype(np.float32),
                (dataset.interactions["user"].to_numpy(), dataset.interactions["item"].to_numpy()),
            ),
            shape=(dataset.n_users, dataset.n_items),
        )
        self.profiles_ = self._profiles(matrix)

    def _profiles(self, weights: sp.csr_matrix) -> sp.csr_matrix:
        # Normalised to unit length, so a score is the cosine of profile and item.
        profiles = normalize(sp.csr_matrix(weights, dtype=np.float32) @ self.item_vectors_)
        return sp.csr_matrix(profiles, dtype=np.float32)

    def _refresh_users(self, users: npt.NDArray[np.int64]) -> None:
        _, _, seen = self._fitted()
        n_users = seen.shape[0]
        profiles = self.profiles_
        if profiles.shape[0] < n_users:
            profiles = sp.vstack(
                [profiles, sp.csr_matrix((n_users - profiles.shape[0], profiles.shape[1]))],
                format="csr",
            )
        keep = np.ones(n_users, dtype=np.float32)
        keep[users] = 0.0
        scatter = sp.csr_matrix(
            (np.ones(len(users), dtype=np.float32), (users, np.arange(len(users)))),
            shape=(n_users, len(users)),
        )
        fresh = self._profiles(seen[users])
        self.profiles_ = sp.csr_matrix(
            sp.diags(keep) @ profiles + scatter @ fresh, dtype=np.float32
        )
        self.profiles_.eliminate_zeros()
        self.profiles_.sort_indices()

    # -- scoring ---------------------------------------------------------------------------
    def _score(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        if len(users) == 1:  # one request: a sparse matrix-vector product, no sub-matrix
            profiles = self.profiles_
            start, stop = profiles.indptr[users[0]], profiles.indptr[users[0] + 1]
            vector = np.zeros(profiles.shape[1], dtype=np.float32)
            vector[profiles.indices[start:stop]] = profiles.data[start:stop]
            return np.asarray((self.item_vectors_ @ vector) + self.prior_, np.float32)[None, :]
        scores = (self.profiles_[users] @ self.item_vectors_.T).toarray()
        return np.asarray(scores + self.prior_, dtype=np.float32)

    def _similar(self, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        scores = (self.item_vectors_[items] @ self.item_vectors_.T).toarray()
        return np.asarray(scores + self.prior_, dtype=np.float32)

    def query_vector(self, query: QueryText) -> sp.csr_matrix:
        """The vector of a free-text or attribute query, shape (1, n_features).

        Raises :class:`DataError` when the query matches no known word, n-gram, attribute or
        number.
        """
        self._fitted()
        vector = self.vectoriser_.query(self.vectoriser_.parse(query, self.item_features_))
        if vector.nnz == 0:
            raise DataError(f"content: query {query!r} matches no known words or attributes")
        return vector

    def query_scores(self, query: QueryText | None) -> npt.NDArray[np.float32]:
        """Scores of every item for ``query`` (cosine plus the popularity tie-break).

        ``None`` gives the popularity prior alone (the most popular items first).
        """
        self._fitted()
        if query is None:
            return self.prior_.copy()
        scores = (self.item_vectors_ @ self.query_vector(query).T).toarray().ravel()
        return np.asarray(scores + self.prior_, dtype=np.float32)

    def _query_scores(
        self, query: Query, boost: npt.NDArray[np.float64] | None
    ) -> QueryScores | None:
        """Cosine of every item with the query's vector: its text and stated attributes
        ("minimalist hand-drawn logo", ``{"gig_design_style": "anime"}``; free text also
        selects the attribute labels it names, numbers ask for similar values), plus the
        profile of the basket's items. An empty query ranks by popularity."""
        _, items, _ = self._fitted()
        vector = None
        if query.text is not None or query.preferences:
            wanted: dict[str, Any] = dict(query.preferences or {})
            if query.text is not None:
                wanted[_TEXT_KEY] = query.text
            vector = self.vectoriser_.query(self.vectoriser_.parse(wanted, self.item_features_))
            if vector.nnz == 0:
                vector = None
        basket = items.to_index(list(query.basket), unknown="mark")
        basket = basket[basket >= 0]
        if len(basket):
            bag = sp.csr_matrix(
                (np.ones(len(basket), np.float32), (np.zeros(len(basket)), basket)),
                shape=(1, len(items)),
            )
            profile = self._profiles(bag)
            vector = profile if vector is None else vector + profile
        if vector is None:
            if not query.is_empty:
                return None
            return QueryScores(self.prior_.copy(), self.name)
        scores = (self.item_vectors_ @ vector.T).toarray().ravel()
        return QueryScores(np.asarray(scores + self.prior_, dtype=np.float32), self.name)

    def explain(
        self, item: object, *, user: object | None = None, query: QueryText | None = None
    ) -> list[str]:
        """Why ``item`` suits ``user`` (their profile) or ``query``: shared attributes
        ("gig_design_style: anime"), the strongest shared words ("words: logo, minimalist"),
        numbers in the same range ("price: similar"). Empty when they share nothing.

        Give exactly one of ``user`` and ``query``.
        """
        users, items, _ = self._fitted()
        if (user is None) == (query is None):
            raise ModelError("content: explain needs either a user or a query")
        row = self.item_vectors_[items.index_of(item, what="item")]
        if user is not None:
            subject = self.profiles_[users.index_of(user, what="user")]
        else:
            assert query is not None
            subject = self.query_vector(query)
        return self.vectoriser_.reasons(subject, row)

    # -- saving ----------------------------------------------------------------------------
    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {
            **self.vectoriser_.to_arrays(),
            **_csr_arrays("items", self.item_vectors_),
            **_csr_arrays("profiles", self.profiles_),
            "prior": self.prior_,
        }

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.vectoriser_ = _Vectoriser.from_arrays(self.params, arrays)
        self.item_vectors_ = _csr_from("items", arrays)
        self.profiles_ = _csr_from("profiles", arrays)
        self.prior_ = arrays["prior"].astype(np.float32)
