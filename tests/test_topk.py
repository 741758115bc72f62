from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from rekko.index.topk import top_k

scores_strategy = arrays(
    np.float32,
    st.tuples(st.integers(1, 6), st.integers(1, 40)),
    elements=st.one_of(
        st.floats(-5, 5, width=32), st.just(np.float32(-np.inf)), st.sampled_from([0.0, 1.0])
    ),
)


@settings(max_examples=150, deadline=None)
@given(scores=scores_strategy, k=st.integers(1, 50))
def test_top_k_matches_a_full_stable_sort(scores: np.ndarray, k: int) -> None:
    indices, best = top_k(scores, k)
    width = min(k, scores.shape[1])
    assert indices.shape == best.shape == (scores.shape[0], width)
    for row in range(scores.shape[0]):
        order = np.lexsort((np.arange(scores.shape[1]), -scores[row]))[:width]
        finite = scores[row, order] > -np.inf
        np.testing.assert_array_equal(indices[row][finite], order[finite])
        assert np.all(indices[row][~finite] == -1), "excluded items must never be returned"
        np.testing.assert_array_equal(best[row][finite], scores[row, order][finite])


def test_top_k_known_answer_with_ties_and_exclusions() -> None:
    scores = np.array([[1, 3, 2, 3, -np.inf], [0, 0, 0, 0, 0]], dtype=np.float32)
    indices, best = top_k(scores, 3)
    np.testing.assert_array_equal(indices, [[1, 3, 2], [0, 1, 2]])
    np.testing.assert_array_equal(best, [[3, 3, 2], [0, 0, 0]])
    indices, _ = top_k(scores, 10)
    np.testing.assert_array_equal(indices[0], [1, 3, 2, 0, -1])


def test_ranking_comparison_allows_ties_to_trade_places_and_nothing_else(
    same_rankings: Callable[..., None],
) -> None:
    def lists(rows: list[tuple[str, str, int, float]]) -> pd.DataFrame:
        return pd.DataFrame(rows, columns=["user_id", "item_id", "rank", "score"])

    base = lists([("u", "a", 1, 3.0), ("u", "b", 2, 2.0), ("u", "c", 3, 2.0)])
    same_rankings(base, lists([("u", "a", 1, 3.0), ("u", "c", 2, 2.0), ("u", "b", 3, 2.0)]))
    # the last slot tied with an item the other list left out
    same_rankings(base, lists([("u", "a", 1, 3.0), ("u", "b", 2, 2.0), ("u", "d", 3, 2.0)]))
    for other in (
        [("u", "b", 1, 3.0), ("u", "a", 2, 2.0), ("u", "c", 3, 2.0)],  # not tied: swapped
        [("u", "a", 1, 3.0), ("u", "b", 2, 2.0), ("u", "c", 3, 1.5)],  # another score
        [("u", "a", 1, 3.0), ("u", "b", 2, 2.0)],  # a row missing
    ):
        with pytest.raises(AssertionError):
            same_rankings(base, lists(other))
