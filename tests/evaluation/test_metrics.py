"""Tests of rekko.evaluation.metrics: hand-computed answers plus Hypothesis properties."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from rekko.evaluation.metrics import (
    RANKING_METRICS,
    average_precision_at_k,
    catalog_coverage,
    count_relevant,
    hit_matrix,
    hit_rate_at_k,
    intra_list_diversity,
    mae,
    ndcg_at_k,
    novelty,
    popularity_bias,
    precision_at_k,
    recall_at_k,
    reciprocal_rank_at_k,
    rmse,
    top_k_categorical_accuracy,
    truncated_average_precision_at_k,
)

# Division by zero or invalid values must not even warn.
pytestmark = pytest.mark.filterwarnings("error")

FAST = settings(max_examples=60, deadline=None)

T, F = True, False


def _hits(rows: list[list[bool]]) -> npt.NDArray[np.bool_]:
    return np.array(rows, dtype=np.bool_)


def _n_rel(values: list[int]) -> npt.NDArray[np.int64]:
    return np.array(values, dtype=np.int64)


def _relevant(sets: list[set[int]], n_items: int) -> sp.csr_matrix:
    rows = [u for u, items in enumerate(sets) for _ in items]
    cols = [i for items in sets for i in sorted(items)]
    data = np.ones(len(rows), dtype=np.float64)
    return sp.csr_matrix((data, (rows, cols)), shape=(len(sets), n_items))


# --------------------------------------------------------------------------- known answers

# Row 0: [hit, miss, hit], 2 relevant.  Row 1: [miss, hit, miss], 3 relevant.
# Row 2: [miss, miss, miss], 1 relevant.
KNOWN_HITS = _hits([[T, F, T], [F, T, F], [F, F, F]])
KNOWN_N_REL = _n_rel([2, 3, 1])
L2, L3 = math.log2(3), 2.0  # log2(rank + 1) for ranks 2 and 3 (1-based)


def test_precision_known() -> None:
    # hits@3 / 3 = 2/3, 1/3, 0
    np.testing.assert_allclose(precision_at_k(KNOWN_HITS, KNOWN_N_REL, 3), [2 / 3, 1 / 3, 0.0])
    # first column only: 1/1, 0/1, 0/1
    np.testing.assert_allclose(precision_at_k(KNOWN_HITS, KNOWN_N_REL, 1), [1.0, 0.0, 0.0])


def test_recall_known() -> None:
    # hits@3 / n_relevant = 2/2, 1/3, 0/1
    np.testing.assert_allclose(recall_at_k(KNOWN_HITS, KNOWN_N_REL, 3), [1.0, 1 / 3, 0.0])
    # k=2: 1/2, 1/3, 0
    np.testing.assert_allclose(recall_at_k(KNOWN_HITS, KNOWN_N_REL, 2), [0.5, 1 / 3, 0.0])


def test_ndcg_known() -> None:
    # Row 0: DCG = 1/log2(2) + 1/log2(4) = 1 + 1/2; IDCG (2 relevant) = 1 + 1/log2(3).
    # Row 1: DCG = 1/log2(3); IDCG (min(3, 3) = 3) = 1 + 1/log2(3) + 1/log2(4).
    expected = [(1 + 1 / L3) / (1 + 1 / L2), (1 / L2) / (1 + 1 / L2 + 1 / L3), 0.0]
    np.testing.assert_allclose(ndcg_at_k(KNOWN_HITS, KNOWN_N_REL, 3), expected)
    # k=2, row 1: DCG = 1/log2(3); IDCG = 1 + 1/log2(3) (only 2 slots).
    row1_k2 = (1 / L2) / (1 + 1 / L2)
    np.testing.assert_allclose(
        ndcg_at_k(KNOWN_HITS, KNOWN_N_REL, 2), [1 / (1 + 1 / L2), row1_k2, 0]
    )


def test_average_precision_known() -> None:
    # Row 0: (P@1 * 1 + P@3 * 1) / min(2, 3) = (1 + 2/3) / 2 = 5/6.
    # Row 1: (P@2 * 1) / min(3, 3) = (1/2) / 3 = 1/6.
    np.testing.assert_allclose(
        average_precision_at_k(KNOWN_HITS, KNOWN_N_REL, 3), [5 / 6, 1 / 6, 0.0]
    )
    # More relevant items than k: [hit, hit, miss, hit], 10 relevant, k=4:
    # (1/1 + 2/2 + 3/4) / 10 = 0.275, as trec_eval, ranx and RecTools divide.
    got = average_precision_at_k(_hits([[T, T, F, T]]), _n_rel([10]), 4)
    np.testing.assert_allclose(got, [2.75 / 10])
    # The truncated variant divides by min(10, 4) instead.
    got = truncated_average_precision_at_k(_hits([[T, T, F, T]]), _n_rel([10]), 4)
    np.testing.assert_allclose(got, [2.75 / 4])
    # With no more relevant items than k both agree.
    np.testing.assert_allclose(
        truncated_average_precision_at_k(KNOWN_HITS, KNOWN_N_REL, 3), [5 / 6, 1 / 6, 0.0]
    )


def test_reciprocal_rank_and_hit_rate_known() -> None:
    # First hits at ranks 1, 2 and none.
    np.testing.assert_allclose(reciprocal_rank_at_k(KNOWN_HITS, KNOWN_N_REL, 3), [1.0, 0.5, 0.0])
    np.testing.assert_allclose(hit_rate_at_k(KNOWN_HITS, KNOWN_N_REL, 3), [1.0, 1.0, 0.0])
    # With k=1 row 1's hit at rank 2 is cut off.
    np.testing.assert_allclose(reciprocal_rank_at_k(KNOWN_HITS, KNOWN_N_REL, 1), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(hit_rate_at_k(KNOWN_HITS, KNOWN_N_REL, 1), [1.0, 0.0, 0.0])


def test_top_k_categorical_accuracy_known() -> None:
    # Micro-average: (2 + 1 + 0) hits / (2 + 3 + 1) relevant = 3/6.
    assert top_k_categorical_accuracy(KNOWN_HITS, KNOWN_N_REL, 3) == pytest.approx(0.5)
    # k=1: 1 hit / 6 relevant, unlike the per-user recall mean (1/2 + 0 + 0) / 3.
    assert top_k_categorical_accuracy(KNOWN_HITS, KNOWN_N_REL, 1) == pytest.approx(1 / 6)
    assert top_k_categorical_accuracy(_hits([[F]]), _n_rel([0]), 1) == 0.0


@pytest.mark.parametrize("name", sorted(RANKING_METRICS))
def test_zero_relevant_rows_give_zero(name: str) -> None:
    metric = RANKING_METRICS[name]
    got = metric(_hits([[F, F], [T, F]]), _n_rel([0, 1]), 2)
    assert got.dtype == np.float64
    assert got.shape == (2,)
    assert got[0] == 0.0
    assert got[1] > 0.0


def test_registry_names() -> None:
    assert set(RANKING_METRICS) == {
        "precision",
        "recall",
        "ndcg",
        "map",
        "map_truncated",
        "mrr",
        "hit_rate",
    }
    assert RANKING_METRICS["ndcg"] is ndcg_at_k
    assert RANKING_METRICS["map"] is average_precision_at_k
    assert RANKING_METRICS["map_truncated"] is truncated_average_precision_at_k


@pytest.mark.parametrize("name", sorted(RANKING_METRICS))
def test_ranking_metric_input_errors(name: str) -> None:
    metric = RANKING_METRICS[name]
    with pytest.raises(ValueError, match="k=4 is larger than the 3 columns"):
        metric(KNOWN_HITS, KNOWN_N_REL, 4)
    with pytest.raises(ValueError, match="at least 1"):
        metric(KNOWN_HITS, KNOWN_N_REL, 0)
    with pytest.raises(ValueError, match="bool"):
        metric(KNOWN_HITS.astype(np.int64), KNOWN_N_REL, 3)
    with pytest.raises(ValueError, match="shape"):
        metric(KNOWN_HITS, KNOWN_N_REL[:2], 3)
    with pytest.raises(ValueError, match="hits but only"):
        metric(KNOWN_HITS, _n_rel([1, 3, 1]), 3)  # row 0 has 2 hits
    with pytest.raises(TypeError):
        metric(KNOWN_HITS, KNOWN_N_REL, 2.0)  # type: ignore[arg-type]


def test_hit_matrix_known() -> None:
    # user 0 relevant {1, 2}; user 1 relevant {2}; 5 items.
    relevant = _relevant([{1, 2}, {2}], n_items=5)
    recommended = np.array([[3, 1, -1], [0, 2, 2]], dtype=np.int64)
    # user 1 lists item 2 twice: only its first position is a hit.
    expected = _hits([[F, T, F], [F, T, F]])
    np.testing.assert_array_equal(hit_matrix(recommended, relevant), expected)


def test_hit_matrix_padding_does_not_alias_previous_user() -> None:
    # key(user, item) = user * n_items + item, so -1 in row 1 would alias (0, n_items - 1).
    relevant = _relevant([{4}, {0}], n_items=5)
    recommended = np.array([[4, -1], [-1, 0]], dtype=np.int64)
    np.testing.assert_array_equal(hit_matrix(recommended, relevant), _hits([[T, F], [F, T]]))


def test_hit_matrix_ignores_stored_zeros_and_sums_duplicates() -> None:
    # (0, 1) is stored as an explicit zero: not relevant. (1, 3) is stored twice: relevant once.
    matrix = sp.csr_matrix(
        (np.array([0.0, 1.0, 1.0, 1.0]), np.array([1, 2, 3, 3]), np.array([0, 2, 4])),
        shape=(2, 4),
    )
    assert not matrix.has_canonical_format
    recommended = np.array([[1, 2], [3, 0]], dtype=np.int64)
    np.testing.assert_array_equal(hit_matrix(recommended, matrix), _hits([[F, T], [T, F]]))
    np.testing.assert_array_equal(count_relevant(matrix), [1, 1])
    # The caller's matrix is left untouched.
    assert matrix.nnz == 4


def test_hit_matrix_errors() -> None:
    relevant = _relevant([{1}, {2}], n_items=3)
    with pytest.raises(ValueError, match="relevant has 2"):
        hit_matrix(np.array([[0]], dtype=np.int64), relevant)
    with pytest.raises(ValueError, match="only 3 items"):
        hit_matrix(np.array([[0], [3]], dtype=np.int64), relevant)
    with pytest.raises(ValueError, match="padding"):
        hit_matrix(np.array([[0], [-2]], dtype=np.int64), relevant)
    with pytest.raises(ValueError, match="2-D"):
        hit_matrix(np.array([0, 1], dtype=np.int64), relevant)
    with pytest.raises(ValueError, match="integer"):
        hit_matrix(np.array([[0.0], [1.0]]), relevant)


def test_hit_matrix_empty_relevant() -> None:
    relevant = sp.csr_matrix((2, 4))
    got = hit_matrix(np.array([[0, 1], [2, 3]], dtype=np.int64), relevant)
    assert got.shape == (2, 2)
    assert not got.any()


def test_rating_metrics_known() -> None:
    # errors: -1, 0, -2 -> MAE = 3/3 = 1; RMSE = sqrt((1 + 0 + 4) / 3)
    assert mae([1.0, 2.0, 3.0], [2.0, 2.0, 5.0]) == pytest.approx(1.0)
    assert rmse([1.0, 2.0, 3.0], [2.0, 2.0, 5.0]) == pytest.approx(math.sqrt(5 / 3))
    assert rmse(np.array([4.0]), np.array([4.0])) == 0.0


@pytest.mark.parametrize("metric", [rmse, mae])
def test_rating_metric_errors(metric: Any) -> None:
    with pytest.raises(ValueError, match="shape"):
        metric([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="no ratings"):
        metric([], [])
    with pytest.raises(ValueError, match="NaN"):
        metric([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match="actual"):
        metric([1.0, 2.0], [float("nan"), 2.0])


def test_catalog_coverage_known() -> None:
    recommended = np.array([[0, 1, -1], [1, 2, 3]], dtype=np.int64)
    # k=2: {0, 1, 2} of 10 items; k=3: {0, 1, 2, 3} (padding ignored).
    assert catalog_coverage(recommended, 10, 2) == pytest.approx(0.3)
    assert catalog_coverage(recommended, 10, 3) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="k=4"):
        catalog_coverage(recommended, 10, 4)
    with pytest.raises(ValueError, match="only 3 items"):
        catalog_coverage(recommended, 3, 3)


def test_intra_list_diversity_known() -> None:
    # item 0: {a}, item 1: {b}, item 2: {a, b}, item 3: no categories.
    categories = sp.csr_matrix(np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=np.float64))
    recommended = np.array([[0, 1, 2], [0, 3, -1], [2, -1, -1]], dtype=np.int64)
    # List 0 pairs: (0,1) cos 0 -> 1; (0,2) and (1,2) cos 1/sqrt(2) -> 1 - 1/sqrt(2) each.
    list0 = (1 + 2 * (1 - 1 / math.sqrt(2))) / 3
    # List 1: (0,3) item 3 has no categories -> similarity 0 -> 1.  List 2: one item, skipped.
    expected = (list0 + 1.0) / 2
    assert intra_list_diversity(recommended, categories, 3) == pytest.approx(expected)
    # k=1: no list has 2 items.
    assert intra_list_diversity(recommended, categories, 1) == 0.0


def test_novelty_and_popularity_bias_known() -> None:
    popularity = np.array([10, 5, 0, 1])
    recommended = np.array([[0, 1], [2, -1]], dtype=np.int64)
    # user 0: -log2(10/10) = 0, -log2(5/10) = 1 -> mean 0.5
    # user 1: item 2 never seen counts as 1 user -> -log2(1/10) = log2(10)
    expected = (0.5 + math.log2(10)) / 2
    assert novelty(recommended, popularity, 10, 2) == pytest.approx(expected)
    # ARP: user 0 mean(10, 5) = 7.5, user 1 mean(0) = 0 -> 3.75
    assert popularity_bias(recommended, popularity, 2) == pytest.approx(3.75)
    # k=1: user 0 only item 0 -> novelty 0, user 1 log2(10); ARP (10 + 0) / 2.
    assert novelty(recommended, popularity, 10, 1) == pytest.approx(math.log2(10) / 2)
    assert popularity_bias(recommended, popularity, 1) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="more than n_users"):
        novelty(recommended, popularity, 5, 2)
    with pytest.raises(ValueError, match="non-negative"):
        popularity_bias(recommended, np.array([1, -1, 0, 0]), 2)


def test_lists_of_only_padding_are_skipped() -> None:
    recommended = np.array([[-1, -1], [1, -1]], dtype=np.int64)
    popularity = np.array([2, 4])
    assert popularity_bias(recommended, popularity, 2) == pytest.approx(4.0)
    assert novelty(recommended, popularity, 4, 2) == pytest.approx(0.0)
    assert catalog_coverage(recommended, 2, 2) == pytest.approx(0.5)
    assert popularity_bias(np.full((2, 2), -1, dtype=np.int64), popularity, 2) == 0.0


# --------------------------------------------------------------------------- strategies


@st.composite
def hits_cases(
    draw: st.DrawFn,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """A random hits matrix with n_relevant >= hits per row (what hit_matrix can produce)."""
    n_users = draw(st.integers(1, 8))
    width = draw(st.integers(1, 12))
    row = st.lists(st.booleans(), min_size=width, max_size=width)
    rows = draw(st.lists(row, min_size=n_users, max_size=n_users))
    hits = _hits(rows)
    extra = draw(st.lists(st.integers(0, 6), min_size=n_users, max_size=n_users))
    n_rel = hits.sum(axis=1) + np.array(extra, dtype=np.int64)
    return hits, n_rel.astype(np.int64)


@st.composite
def recommendation_cases(
    draw: st.DrawFn, distinct: bool = False
) -> tuple[npt.NDArray[np.int64], list[set[int]], int]:
    """Random (recommended, relevant sets, n_items); lists may repeat items unless distinct."""
    n_items = draw(st.integers(1, 15))
    n_users = draw(st.integers(1, 6))
    width = draw(st.integers(1, 8))
    recommended = np.full((n_users, width), -1, dtype=np.int64)
    relevant: list[set[int]] = []
    for u in range(n_users):
        if distinct:
            items = draw(st.lists(st.integers(0, n_items - 1), max_size=width, unique=True))
            recommended[u, : len(items)] = items
        else:
            cells = draw(st.lists(st.integers(-1, n_items - 1), min_size=width, max_size=width))
            recommended[u] = cells
        relevant.append(set(draw(st.lists(st.integers(0, n_items - 1), max_size=n_items))))
    return recommended, relevant, n_items


def _slow_hit_matrix(recommended: npt.NDArray[np.int64], relevant: list[set[int]]) -> Any:
    out = np.zeros(recommended.shape, dtype=np.bool_)
    for u, row in enumerate(recommended.tolist()):
        seen: set[int] = set()
        for r, item in enumerate(row):
            if item >= 0 and item in relevant[u] and item not in seen:
                out[u, r] = True
            seen.add(item)
    return out


# --------------------------------------------------------------------------- properties


@FAST
@given(hits_cases())
def test_per_user_metrics_are_in_unit_interval(
    case: tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]],
) -> None:
    hits, n_rel = case
    for k in range(1, hits.shape[1] + 1):
        for name, metric in RANKING_METRICS.items():
            values = metric(hits, n_rel, k)
            assert values.shape == (hits.shape[0],), name
            assert np.all(values >= 0.0), name
            assert np.all(values <= 1.0 + 1e-12), name
        assert 0.0 <= top_k_categorical_accuracy(hits, n_rel, k) <= 1.0


@FAST
@given(hits_cases())
def test_count_identities(case: tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]) -> None:
    hits, n_rel = case
    previous = np.zeros(hits.shape[0])
    for k in range(1, hits.shape[1] + 1):
        n_hits = hits[:, :k].sum(axis=1)
        precision = precision_at_k(hits, n_rel, k)
        recall = recall_at_k(hits, n_rel, k)
        np.testing.assert_allclose(precision * k, n_hits)
        # recall never drops as k grows
        assert np.all(recall >= previous - 1e-12)
        previous = recall
        # any hit <=> hit_rate 1 <=> recall > 0 <=> reciprocal rank > 0
        hit_rate = hit_rate_at_k(hits, n_rel, k)
        np.testing.assert_array_equal(hit_rate == 1.0, recall > 0)
        np.testing.assert_array_equal(hit_rate == 1.0, reciprocal_rank_at_k(hits, n_rel, k) > 0)
        np.testing.assert_array_equal(hit_rate == 1.0, n_hits > 0)
        assert np.all(hit_rate >= recall)
        # micro average = total hits / total relevant
        total = n_rel.sum()
        expected = n_hits.sum() / total if total else 0.0
        assert top_k_categorical_accuracy(hits, n_rel, k) == pytest.approx(expected)


@FAST
@given(st.integers(1, 12), st.integers(0, 15), st.integers(1, 12))
def test_perfect_ranking(width: int, n_relevant: int, k_seed: int) -> None:
    k = 1 + (k_seed - 1) % width
    n_rel = _n_rel([n_relevant])
    hits = np.zeros((1, width), dtype=np.bool_)
    hits[0, : min(n_relevant, width)] = True
    expected_best = 1.0 if n_relevant else 0.0
    assert ndcg_at_k(hits, n_rel, k)[0] == pytest.approx(expected_best)
    assert truncated_average_precision_at_k(hits, n_rel, k)[0] == pytest.approx(expected_best)
    expected_ap = min(n_relevant, k) / n_relevant if n_relevant else 0.0
    assert average_precision_at_k(hits, n_rel, k)[0] == pytest.approx(expected_ap)
    assert reciprocal_rank_at_k(hits, n_rel, k)[0] == pytest.approx(expected_best)
    expected_recall = min(n_relevant, k) / n_relevant if n_relevant else 0.0
    assert recall_at_k(hits, n_rel, k)[0] == pytest.approx(expected_recall)


@FAST
@given(hits_cases(), st.randoms(use_true_random=False))
def test_order_within_top_k_does_not_change_precision_or_recall(
    case: tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]], rnd: Any
) -> None:
    hits, n_rel = case
    k = rnd.randint(1, hits.shape[1])
    shuffled = hits.copy()
    for row in shuffled:
        head = list(row[:k])
        rnd.shuffle(head)
        row[:k] = head
    for metric in (precision_at_k, recall_at_k, hit_rate_at_k):
        np.testing.assert_allclose(metric(shuffled, n_rel, k), metric(hits, n_rel, k))
    # ...while ranking-aware metrics of a shuffled list never beat the hits-first order.
    best = np.zeros_like(hits)
    n_hits = hits[:, :k].sum(axis=1)
    for u, n in enumerate(n_hits):
        best[u, :n] = True
    for metric in (
        ndcg_at_k,
        average_precision_at_k,
        truncated_average_precision_at_k,
        reciprocal_rank_at_k,
    ):
        assert np.all(metric(shuffled, n_rel, k) <= metric(best, n_rel, k) + 1e-12)


@FAST
@given(recommendation_cases())
def test_hit_matrix_matches_slow_reference(
    case: tuple[npt.NDArray[np.int64], list[set[int]], int],
) -> None:
    recommended, relevant_sets, n_items = case
    relevant = _relevant(relevant_sets, n_items)
    got = hit_matrix(recommended, relevant)
    assert got.dtype == np.bool_
    np.testing.assert_array_equal(got, _slow_hit_matrix(recommended, relevant_sets))
    # padding is never a hit
    assert not got[recommended < 0].any()
    # hits never exceed the relevant counts, so every metric accepts them
    n_rel = count_relevant(relevant)
    np.testing.assert_array_equal(n_rel, [len(s) for s in relevant_sets])
    assert np.all(got.sum(axis=1) <= n_rel)


@FAST
@given(recommendation_cases(distinct=True), st.integers(1, 4))
def test_padding_never_counts(
    case: tuple[npt.NDArray[np.int64], list[set[int]], int], extra: int
) -> None:
    recommended, relevant_sets, n_items = case
    relevant = _relevant(relevant_sets, n_items)
    padded = np.hstack([recommended, np.full((recommended.shape[0], extra), -1, np.int64)])
    hits = hit_matrix(padded, relevant)
    assert not hits[:, recommended.shape[1] :].any()
    np.testing.assert_array_equal(
        hits[:, : recommended.shape[1]], hit_matrix(recommended, relevant)
    )
    n_rel = count_relevant(relevant)
    width = recommended.shape[1]
    full = padded.shape[1]
    # Extra padding adds no hits: recall is unchanged, precision is diluted by k.
    np.testing.assert_allclose(recall_at_k(hits, n_rel, full), recall_at_k(hits, n_rel, width))
    np.testing.assert_allclose(
        precision_at_k(hits, n_rel, full) * full, precision_at_k(hits, n_rel, width) * width
    )
    assert catalog_coverage(padded, n_items, full) == catalog_coverage(recommended, n_items, width)


@FAST
@given(
    st.lists(
        st.tuples(
            st.floats(-10, 10, allow_nan=False, allow_infinity=False),
            st.floats(-10, 10, allow_nan=False, allow_infinity=False),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_rmse_at_least_mae(pairs: list[tuple[float, float]]) -> None:
    predicted = np.array([p for p, _ in pairs])
    actual = np.array([a for _, a in pairs])
    r, m = rmse(predicted, actual), mae(predicted, actual)
    assert m >= 0.0
    assert r >= m - 1e-9
    assert m == pytest.approx(float(np.mean(np.abs(predicted - actual))))


@FAST
@given(recommendation_cases(), st.integers(1, 8))
def test_coverage_matches_set_count(
    case: tuple[npt.NDArray[np.int64], list[set[int]], int], k_seed: int
) -> None:
    recommended, _, n_items = case
    k = 1 + (k_seed - 1) % recommended.shape[1]
    got = catalog_coverage(recommended, n_items, k)
    distinct = {int(i) for i in recommended[:, :k].ravel() if i >= 0}
    assert 0.0 <= got <= 1.0
    assert got == pytest.approx(len(distinct) / n_items)


def _slow_diversity(recommended: npt.NDArray[np.int64], categories: Any, k: int) -> float:
    dense = np.asarray(categories.toarray(), dtype=np.float64)
    per_user = []
    for row in recommended[:, :k]:
        items = [int(i) for i in row if i >= 0]
        if len(items) < 2:
            continue
        dissimilarities = []
        for a, b in itertools.combinations(items, 2):
            na, nb = np.linalg.norm(dense[a]), np.linalg.norm(dense[b])
            similarity = float(dense[a] @ dense[b] / (na * nb)) if na > 0 and nb > 0 else 0.0
            dissimilarities.append(1.0 - similarity)
        per_user.append(np.mean(dissimilarities))
    return float(np.mean(per_user)) if per_user else 0.0


@FAST
@given(recommendation_cases(), st.data())
def test_diversity_matches_pairwise_reference(
    case: tuple[npt.NDArray[np.int64], list[set[int]], int], data: st.DataObject
) -> None:
    recommended, _, n_items = case
    n_categories = data.draw(st.integers(1, 4))
    cells = data.draw(
        st.lists(st.booleans(), min_size=n_items * n_categories, max_size=n_items * n_categories)
    )
    categories = sp.csr_matrix(np.array(cells, dtype=np.float64).reshape(n_items, n_categories))
    k = recommended.shape[1]
    got = intra_list_diversity(recommended, categories, k)
    assert 0.0 <= got <= 1.0
    assert got == pytest.approx(_slow_diversity(recommended, categories, k), abs=1e-9)


@FAST
@given(recommendation_cases(), st.lists(st.booleans(), min_size=1, max_size=4))
def test_diversity_zero_for_identical_categories(
    case: tuple[npt.NDArray[np.int64], list[set[int]], int], vector: list[bool]
) -> None:
    recommended, _, n_items = case
    if not any(vector):
        vector = [True, *vector[1:]]
    categories = sp.csr_matrix(np.tile(np.array(vector, dtype=np.float64), (n_items, 1)))
    k = recommended.shape[1]
    assert intra_list_diversity(recommended, categories, k) == pytest.approx(0.0, abs=1e-9)


@FAST
@given(recommendation_cases(), st.data())
def test_novelty_and_arp_match_reference(
    case: tuple[npt.NDArray[np.int64], list[set[int]], int], data: st.DataObject
) -> None:
    recommended, _, n_items = case
    n_users = data.draw(st.integers(1, 50))
    popularity = np.array(
        data.draw(st.lists(st.integers(0, n_users), min_size=n_items, max_size=n_items))
    )
    k = recommended.shape[1]
    novelties, arps = [], []
    for row in recommended:
        items = [int(i) for i in row if i >= 0]
        if items:
            novelties.append(np.mean([-math.log2(max(popularity[i], 1) / n_users) for i in items]))
            arps.append(np.mean([popularity[i] for i in items]))
    expected_novelty = float(np.mean(novelties)) if novelties else 0.0
    expected_arp = float(np.mean(arps)) if arps else 0.0
    got = novelty(recommended, popularity, n_users, k)
    assert got >= 0.0
    assert got == pytest.approx(expected_novelty)
    assert popularity_bias(recommended, popularity, k) == pytest.approx(expected_arp)
