"""The shared routes that answer queries on any model (:mod:`rekko.models.cold`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rekko.data.dataset import Dataset
from rekko.models import Query, Recommender, create_model
from rekko.models.query import PreferenceError


@pytest.fixture(scope="module")
def popularity(small_demo: Dataset) -> Recommender:
    return create_model("popularity").fit(small_demo)


def test_text_matches_words_of_item_features(popularity: Recommender, small_demo: Dataset) -> None:
    recs = popularity.recommend_query("vintage lantern", k=5)
    assert recs.attrs["source"] == "keywords"
    assert small_demo.item_features is not None
    frame = small_demo.item_features.frame
    words = [
        set(frame["title"].iloc[i].split()) | set(frame["tags"].iloc[i])
        for i in small_demo.items.to_index(recs["item_id"])
    ]
    assert all(w & {"vintage", "lantern"} for w in words)
    assert recs["score"].tolist() == sorted(recs["score"].tolist(), reverse=True)
    assert recs["score"].iloc[0] == max(len(w & {"vintage", "lantern"}) for w in words)


def test_preferences_are_constraints_and_narrow_the_text(
    popularity: Recommender, small_demo: Dataset
) -> None:
    assert small_demo.item_features is not None
    frame = small_demo.item_features.frame
    stated = popularity.recommend_query({"category": "garden"}, k=50)
    assert stated.attrs["source"] == "preferences"
    index = small_demo.items.to_index(stated["item_id"])
    assert (frame["category"].to_numpy()[index] == "garden").all()
    assert len(stated) == int((frame["category"] == "garden").sum())
    both = popularity.recommend_query(Query(text="vintage", preferences={"category": "garden"}))
    assert both.attrs["source"] == "keywords"  # the text is not dropped for the preference
    index = small_demo.items.to_index(both["item_id"])
    assert (frame["category"].to_numpy()[index] == "garden").all()
    with pytest.raises(PreferenceError, match="colour"):
        popularity.recommend_query({"colour": "red"})


def test_a_basket_gets_what_its_buyers_also_took(
    popularity: Recommender, small_demo: Dataset
) -> None:
    basket = list(small_demo.items.external_ids[:2])
    recs = popularity.recommend_query(Query(basket=basket), k=5)
    assert recs.attrs["source"] == "basket" and not set(basket) & set(recs["item_id"])
    matrix = small_demo.matrix.copy()
    matrix.data[:] = 1
    buyers = np.asarray(matrix[:, small_demo.items.to_index(basket)].sum(axis=1)).ravel()
    counts = matrix.T @ buyers  # co-occurrence with the basket, by hand
    counts[small_demo.items.to_index(basket)] = -1
    assert recs["score"].tolist() == sorted(counts, reverse=True)[:5]


def test_unknown_items_and_nothing_at_all_give_popularity(popularity: Recommender) -> None:
    unknown = popularity.recommend_query(Query(basket=["no-such-item"]), k=3)
    assert unknown.attrs["source"] == "popularity"
    assert unknown.attrs["note"] == "none of the given items is known to the model"
    nothing = popularity.recommend_query(None, k=3)
    assert nothing.attrs["source"] == "popularity" and nothing.attrs["note"] is None
    unmatched = popularity.recommend_query("qqqq", k=3)
    assert unmatched.attrs["note"] == "no item matches a word of the query"
    pd.testing.assert_frame_equal(unmatched, nothing, check_like=True)


def test_popularity_follows_events_as_they_arrive(small_demo: Dataset) -> None:
    model = create_model("ease").fit(small_demo)
    last = model.recommend_query(None, k=small_demo.n_items)["item_id"].iloc[-1]
    users = list(small_demo.users.external_ids[:60])
    model.add_interactions(users, [last] * len(users))
    assert model.recommend_query(None, k=1)["item_id"].iloc[0] == last
