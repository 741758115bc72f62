"""The content model: vectors from item features, profiles, queries, explanations, saving.

Also the acceptance tests on real data: Fiverr (a new client states what they like and gets
illustrators) and Seefud (recipes like the ones a user cooked).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from rekko.constraints import Equals, Range
from rekko.data.dataset import Dataset
from rekko.errors import DataError, ModelError
from rekko.models import load_model
from rekko.models.content import ContentModel


def _shop(with_timestamps: bool = False) -> Dataset:
    """Six items with text, a category, tags and a price; item f has no interactions."""
    items = pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d", "e", "f"],
            "title": [
                "mystery novel paperback",
                "mystery novel hardcover edition",
                "jazz vinyl album",
                "jazz piano album",
                "garden hose and shears",
                "poetry novel collection",
            ],
            "category": ["books", "books", "music", "music", "garden", "books"],
            "tags": ["crime|paper", "crime", "jazz", "jazz|piano", "tools", "poems"],
            "price": [10.0, 30.0, 20.0, 25.0, 40.0, 12.0],
        }
    )
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u2", "u3", "u4"],
            "item_id": ["a", "c", "c", "d", "e", "b"],
            "timestamp": [0, 100 * 86_400, 0, 1, 2, 3],
        }
    )
    if not with_timestamps:
        frame = frame.drop(columns="timestamp")
    return Dataset.from_frame(
        frame,
        item_features=items,
        item_feature_kinds={
            "title": "text",
            "category": "categorical",
            "tags": "multi",
            "price": "numeric",
        },
    )


def _content(**params: object) -> ContentModel:
    return ContentModel(**params)


@pytest.fixture(scope="module")
def shop_model() -> ContentModel:
    return _content().fit(_shop())


# -- vectors ---------------------------------------------------------------------------------
def test_item_vectors_are_unit_rows_and_similar_items_share_features(
    shop_model: ContentModel,
) -> None:
    vectors = shop_model.item_vectors_
    assert sp.issparse(vectors)
    np.testing.assert_allclose(sp.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    similar = shop_model.similar_items(["a"], k=5)
    assert similar["similar_item_id"].tolist()[:2] == ["b", "f"]  # both books, novels
    assert similar["similar_item_id"].tolist()[-1] == "e"


def test_block_weights_steer_similarity() -> None:
    by_text = _content(category_weight=0, numeric_weight=0, char_weight=0).fit(_shop())
    by_price = _content(text_weight=0, char_weight=0, category_weight=0).fit(_shop())
    # Price quantiles: a 0, f .2, c .4, d .6, b .8, e 1.
    assert by_price.similar_items(["a"], k=1)["similar_item_id"].tolist() == ["f"]
    assert by_price.similar_items(["e"], k=2)["similar_item_id"].tolist() == ["b", "d"]
    text_similar = by_text.similar_items(["c"], k=1)["similar_item_id"].tolist()
    assert text_similar == ["d"]  # "jazz ... album"


def test_fitting_without_item_features_is_a_clear_error() -> None:
    frame = pd.DataFrame({"user_id": ["u"], "item_id": ["i"]})
    with pytest.raises(ModelError, match=r"content: needs an item feature table"):
        _content().fit(Dataset.from_frame(frame))


def test_parameters_are_checked() -> None:
    with pytest.raises(ModelError, match="at least one of the block weights"):
        _content(text_weight=0, char_weight=0, category_weight=0, numeric_weight=0)
    with pytest.raises(ModelError, match="char_ngram_range"):
        _content(char_ngram_range=(5, 3))
    with pytest.raises(ModelError, match="unknown item feature 'colour'"):
        _content(columns=["colour"]).fit(_shop())


def test_id_like_categorical_columns_are_skipped() -> None:
    items = pd.DataFrame(
        {
            "item_id": [f"i{n}" for n in range(30)],
            "seller": [f"seller{n}" for n in range(30)],
            "kind": ["x", "y", "z"] * 10,
        }
    )
    data = Dataset.from_frame(
        pd.DataFrame({"user_id": ["u"], "item_id": ["i0"]}),
        item_features=items,
        item_feature_kinds={"seller": "categorical", "kind": "categorical"},
    )
    model = _content().fit(data)
    assert set(model.vectoriser_.attribute_columns.tolist()) == {"kind"}


# -- users -----------------------------------------------------------------------------------
def test_user_profiles_favour_items_like_their_history(shop_model: ContentModel) -> None:
    recs = shop_model.recommend(["u4"], k=5)  # u4 read "b", a mystery novel
    assert recs["item_id"].tolist()[:2] == ["a", "f"]
    assert "b" not in set(recs["item_id"])


def test_recency_decay_weighs_recent_events_more() -> None:
    data = _shop(with_timestamps=True)  # u1: book "a" 100 days before jazz "c"
    flat = _content().fit(data)
    recent = _content(half_life_days=7).fit(data)
    music_item = ["d"]
    assert recent.score("u1", music_item)[0] > flat.score("u1", music_item)[0]
    assert recent.recommend(["u1"], k=1)["item_id"].tolist() == ["d"]


def test_fold_in_updates_a_known_users_profile() -> None:
    model = _content().fit(_shop())
    before = model.score("u3", ["a"])[0]  # u3 has only the garden hose
    model.add_interactions(["u3", "u3"], ["b", "f"], [5.0, 5.0])
    assert model.score("u3", ["a"])[0] > before + 0.2
    assert model.recommend(["u3"], k=1)["item_id"].tolist() == ["a"]


def test_fold_in_serves_a_new_user() -> None:
    model = _content().fit(_shop())
    model.add_interactions(["new", "new"], ["c", "d"])
    assert model.recommend(["new"], k=1)["item_id"].tolist() != []
    assert model.profiles_.shape[0] == len(model.users_ or [])
    assert set(model.recommend(["new"], k=4)["item_id"]) & {"c", "d"} == set()


# -- queries ---------------------------------------------------------------------------------
def test_free_text_query_ranks_matching_items_first(shop_model: ContentModel) -> None:
    recs = shop_model.recommend_query("jazz album", k=3)
    assert list(recs.columns) == ["item_id", "rank", "score"]
    assert recs.attrs["source"] == "content"
    assert set(recs["item_id"][:2]) == {"c", "d"}
    assert recs["rank"].tolist() == [1, 2, 3]


def test_free_text_names_attribute_labels(shop_model: ContentModel) -> None:
    # "garden" is no word of any title except e's, but it is a category label: both count.
    recs = shop_model.recommend_query("something for the garden", k=1)
    assert recs["item_id"].tolist() == ["e"]
    assert "category: garden" in shop_model.explain("e", query="something for the garden")


def test_attribute_queries_and_cold_items(shop_model: ContentModel) -> None:
    recs = shop_model.recommend_query({"tags": "poems"}, k=1)
    assert recs["item_id"].tolist() == ["f"]  # f has no interactions: content still knows it
    recs = shop_model.recommend_query({"category": "books", "price": 11}, k=3)
    assert recs["item_id"].tolist()[:2] == ["a", "f"]  # books, nearest in price


def test_typos_are_forgiven_by_character_ngrams(shop_model: ContentModel) -> None:
    assert shop_model.recommend_query("mistery", k=2)["item_id"].tolist() == ["a", "b"]
    without = _content(char_weight=0).fit(_shop())
    with pytest.raises(DataError, match="matches no known words"):
        without.recommend_query("mistery", strict=True)


def test_queries_respect_filters_and_exclusions(shop_model: ContentModel) -> None:
    recs = shop_model.recommend_query("novel", k=10, filters=Range("price", high=20), exclude=["a"])
    assert recs["item_id"].tolist()[0] == "f"
    assert set(recs["item_id"]) <= {"c", "f"}
    assert len(recs) == 2


def test_query_errors(shop_model: ContentModel) -> None:
    with pytest.raises(DataError, match="matches no known words, attributes or items"):
        shop_model.recommend_query("qqqq", strict=True)
    # not strict: the shared routes answer, and say why
    fallen = shop_model.recommend_query("qqqq", k=2)
    assert fallen.attrs["source"] == "popularity" and len(fallen) == 2
    assert fallen.attrs["note"] == "the query matched nothing the model knows"
    with pytest.raises(DataError, match="unknown item feature 'colour'"):
        shop_model.recommend_query({"colour": "red"})
    with pytest.raises(DataError, match="must be a number"):
        shop_model.recommend_query({"price": "cheap"})
    with pytest.raises(ModelError, match="k must be at least 1"):
        shop_model.recommend_query("novel", k=0)


def test_no_query_ranks_by_popularity(shop_model: ContentModel) -> None:
    recs = shop_model.recommend_query(None, k=2)
    assert recs["item_id"].tolist() == ["c", "a"]  # c: two users; then the first of the rest


def test_explain_names_shared_attributes_and_words(shop_model: ContentModel) -> None:
    reasons = shop_model.explain("b", query={"text": "mystery novel", "category": "books"})
    assert reasons[0] == "category: books"
    assert "words: mystery" in reasons  # "novel" is in half the titles: no reason
    assert "category: books" in shop_model.explain("a", user="u4")
    assert shop_model.explain("e", query="jazz") == []
    with pytest.raises(ModelError, match="either a user or a query"):
        shop_model.explain("a")


# -- saving ----------------------------------------------------------------------------------
def test_saved_model_answers_queries_identically(shop_model: ContentModel, tmp_path: Path) -> None:
    shop_model.save(tmp_path / "content")
    loaded = load_model(tmp_path / "content")
    assert isinstance(loaded, ContentModel)
    for query in ("mistery novel", "jazz", {"category": "books", "price": 25}):
        pd.testing.assert_frame_equal(
            loaded.recommend_query(query, k=6), shop_model.recommend_query(query, k=6)
        )
        assert (loaded.query_vector(query) != shop_model.query_vector(query)).nnz == 0
    users = np.arange(4)
    np.testing.assert_array_equal(loaded._score(users), shop_model._score(users))
    assert loaded.explain("b", user="u4") == shop_model.explain("b", user="u4")
    with np.load(tmp_path / "content" / "state.npz", allow_pickle=False) as state:
        assert state["word_terms"].dtype.kind == "U"


# -- real data -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fiverr(datasets_dir: Path) -> Dataset:
    from rekko.data.loaders import load_fiverr

    return load_fiverr(datasets_dir / "fiverr")


@pytest.fixture(scope="module")
def fiverr_model(fiverr: Dataset) -> ContentModel:
    return _content().fit(fiverr)


def test_fiverr_anime_under_30_returns_only_qualifying_gigs_anime_first(
    fiverr: Dataset, fiverr_model: ContentModel
) -> None:
    assert fiverr.item_features is not None
    frame = fiverr.item_features.frame
    recs = fiverr_model.recommend_query("anime", k=20, filters=Range("gig_price_from", high=30))
    index = fiverr.items.to_index(recs["item_id"])
    assert len(recs) == 20
    assert (frame["gig_price_from"].to_numpy()[index] <= 30).all()
    styles = frame["gig_design_style"].to_numpy()[index]
    anime_cheap = int(
        ((frame["gig_design_style"] == "anime") & (frame["gig_price_from"] <= 30)).sum()
    )
    assert anime_cheap >= 20
    assert (styles == "anime").all()
    assert np.all(np.diff(recs["score"].to_numpy()) <= 0)
    assert "gig_design_style: anime" in fiverr_model.explain(recs["item_id"][0], query="anime")


def test_fiverr_stated_style_and_words(fiverr: Dataset, fiverr_model: ContentModel) -> None:
    assert fiverr.item_features is not None
    frame = fiverr.item_features.frame
    recs = fiverr_model.recommend_query("minimalist hand-drawn logo", k=10)
    index = fiverr.items.to_index(recs["item_id"])
    assert (frame["gig_design_type"].to_numpy()[index] == "logos").all()
    assert set(frame["gig_design_style"].to_numpy()[index]) <= {"minimalist", "hand drawn"}
    by_style = fiverr_model.recommend_query(
        {"gig_design_style": "calligraphy"},
        k=10,
        filters=Equals("gig_design_type", "fonts & typography"),
    )
    index = fiverr.items.to_index(by_style["item_id"])
    assert (frame["gig_design_style"].to_numpy()[index] == "calligraphy").all()
    assert (frame["gig_design_type"].to_numpy()[index] == "fonts & typography").all()


def test_seefud_recommendations_resemble_what_users_cooked(datasets_dir: Path) -> None:
    from rekko.data.loaders import load_seefud

    data = load_seefud(datasets_dir / "seefud")
    model = _content().fit(data)
    vectors = model.item_vectors_
    users = list(data.users.external_ids)
    recs = model.recommend(users, k=10)
    rng = np.random.default_rng(0)
    recommended_cos, random_cos = [], []
    for user in users:
        history = data.matrix[data.users.index_of(user)].indices
        chosen = data.items.to_index(recs.loc[recs["user_id"] == user, "item_id"])
        others = rng.choice(np.setdiff1d(np.arange(data.n_items), history), 10, replace=False)
        recommended_cos.append((vectors[chosen] @ vectors[history].T).mean())
        random_cos.append((vectors[others] @ vectors[history].T).mean())
    recommended, random = np.asarray(recommended_cos), np.asarray(random_cos)
    assert (recommended > random).mean() >= 0.9
    assert recommended.mean() > 1.5 * random.mean()
    # Independently of the model's own vectors: the recommended recipes share more ingredient
    # words with what the user cooked than random recipes do.
    assert data.item_features is not None
    words = [
        set(re.findall(r"[a-z]{3,}", str(text).lower()))
        for text in data.item_features.frame["ingredients"]
    ]
    shared_recommended, shared_random = [], []
    for user in users:
        cooked = set().union(*(words[i] for i in data.matrix[data.users.index_of(user)].indices))
        chosen = data.items.to_index(recs.loc[recs["user_id"] == user, "item_id"])
        history = data.matrix[data.users.index_of(user)].indices
        others = rng.choice(np.setdiff1d(np.arange(data.n_items), history), 10, replace=False)
        shared_recommended.append(
            np.mean([len(words[i] & cooked) / max(len(words[i]), 1) for i in chosen])
        )
        shared_random.append(
            np.mean([len(words[i] & cooked) / max(len(words[i]), 1) for i in others])
        )
    assert np.mean(shared_recommended) > 1.15 * np.mean(shared_random), (  # 0.92 vs 0.74
        np.mean(shared_recommended),
        np.mean(shared_random),
    )
    spicy = model.recommend_query("ayam pedas", k=5)["item_id"].tolist()
    assert all("ayam" in title or "pedas" in title for title in spicy)


def test_similar_spelling_is_a_reason_for_a_typo_not_a_shared_ngram(
    shop_model: ContentModel,
) -> None:
    assert "similar spelling" in shop_model.explain("a", query="mistery")  # mystery novel
    assert "similar spelling" not in shop_model.explain("f", query="mistery")  # poet"ry "
