"""Built-in loaders: the real data sets (counts from their PROVENANCE.md) and written samples."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rekko.data import loaders
from rekko.data.dataset import Dataset, EventWeights
from rekko.data.loaders import (
    DATASETS,
    fiverr_gig_id,
    load_builtin,
    load_fiverr,
    load_movielens_100k,
    load_movielens_latest,
    load_movielens_split,
    load_retailrocket,
    load_seefud,
)
from rekko.errors import DataError


def pairs(dataset: Dataset) -> set[tuple[object, object]]:
    frame = dataset.to_frame()
    return set(zip(frame["user_id"], frame["item_id"], strict=True))


# -- MovieLens 100K -------------------------------------------------------------------------
def test_ml100k_counts_and_kind(ml100k: Dataset) -> None:
    assert (len(ml100k), ml100k.n_users, ml100k.n_items) == (100_000, 943, 1_682)
    assert ml100k.explicit and ml100k.has_timestamps
    values = ml100k.interactions["value"]
    assert set(values.unique()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert ml100k.interactions["count"].max() == 1  # no repeated (user, item) pairs
    assert ml100k.users.kind == ml100k.items.kind == "int"


def test_ml100k_item_features(ml100k: Dataset) -> None:
    features = ml100k.item_features
    assert features is not None
    assert dict(features.kinds) == {"title": "text", "year": "numeric", "genres": "multi"}
    toy_story = features.frame.iloc[ml100k.items.index_of(1)]
    assert toy_story["title"] == "Toy Story (1995)"
    assert toy_story["genres"] == ("Animation", "Children's", "Comedy")
    assert toy_story["year"] == 1995
    unknown = features.frame.iloc[ml100k.items.index_of(267)]  # the movie without a date
    assert np.isnan(unknown["year"])
    # latin-1 titles are decoded, not mangled
    assert features.frame["title"].str.contains("é").any()
    assert all(isinstance(genres, tuple) for genres in features.frame["genres"])


def test_ml100k_user_features(ml100k: Dataset) -> None:
    features = ml100k.user_features
    assert features is not None
    first = features.frame.iloc[ml100k.users.index_of(1)]
    assert (first["age"], first["gender"], first["occupation"], first["zip"]) == (
        24.0,
        "M",
        "technician",
        "85711",
    )
    assert features.kinds["zip"] == "categorical"
    assert (features.frame["gender"] == "M").sum() == 670


def test_ml100k_split_shares_id_maps(datasets_dir: Path, ml100k: Dataset) -> None:
    train, test = load_movielens_split(datasets_dir / "ml-100k", "u1")
    assert (len(train), len(test)) == (80_000, 20_000)
    assert train.users == test.users == ml100k.users
    assert train.items == test.items == ml100k.items
    assert not pairs(train) & pairs(test)
    assert pairs(train) | pairs(test) == pairs(ml100k)
    assert train.item_features is not None and test.item_features is not None
    assert len(train.item_features.frame) == train.n_items


def test_ml100k_split_name_is_checked(datasets_dir: Path) -> None:
    with pytest.raises(DataError, match=r"unknown MovieLens 100K split 'u9'"):
        load_movielens_split(datasets_dir / "ml-100k", "u9")


def test_ml100k_errors_count_lines_of_headerless_files(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text("1\t1\t5\t881250949\n1\t2\tx\t881250949\n")
    with pytest.raises(DataError) as caught:
        load_movielens_100k(tmp_path)
    assert (caught.value.source, caught.value.row, caught.value.column) == ("u.data", 2, "rating")


def test_ml100k_without_feature_files(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text("1\t1\t5\t881250949\n2\t1\t3\t881250949\n")
    dataset = load_movielens_100k(tmp_path)
    assert (len(dataset), dataset.item_features, dataset.user_features) == (2, None, None)


def test_ml100k_missing_folder_and_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"folder not found"):
        load_movielens_100k(tmp_path / "nowhere")
    (tmp_path / "u_data").write_text("")
    with pytest.raises(DataError, match=r"required file 'u.data' not found.*did you mean 'u_data'"):
        load_movielens_100k(tmp_path)


# -- MovieLens latest (written in the published format) ---------------------------------------
def write_movielens_latest(folder: Path) -> Path:
    folder.mkdir()
    (folder / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n"
        "2,1,2.5,964982224\n2,1,3.5,964983000\n"
    )
    (folder / "movies.csv").write_text(
        "movieId,title,genres\n"
        "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
        '3,"American President, The (1995)",Comedy|Drama|Romance\n'
        "5,Unnamed,(no genres listed)\n"
    )
    (folder / "tags.csv").write_text(
        "userId,movieId,tag,timestamp\n2,1,Pixar,1445714994\n1,1,pixar,1445714996\n"
        "1,1,fun,1445714996\n2,7,dark,1445715000\n"
    )
    return folder


def test_movielens_latest(tmp_path: Path) -> None:
    dataset = load_movielens_latest(write_movielens_latest(tmp_path / "ml-latest-small"))
    assert dataset.name == "movielens-ml-latest-small"
    assert dataset.explicit
    assert (len(dataset), dataset.n_users) == (3, 2)
    assert dataset.items.to_external(np.arange(dataset.n_items)).tolist() == [1, 3, 5, 7]
    frame = dataset.to_frame().set_index(["user_id", "item_id"])
    assert frame.loc[(2, 1), "rating"] == 3.5  # the later rating of a repeated pair wins
    features = dataset.item_features
    assert features is not None
    assert dict(features.kinds) == {
        "title": "text",
        "year": "numeric",
        "genres": "multi",
        "tags": "multi",
    }
    rows = features.frame
    assert rows["title"].tolist()[:2] == ["Toy Story (1995)", "American President, The (1995)"]
    assert rows["year"].tolist()[:2] == [1995.0, 1995.0] and np.isnan(rows["year"][2])
    assert rows["genres"].tolist()[2] == ()
    assert rows["tags"].tolist() == [("pixar", "fun"), (), (), ("dark",)]


def test_movielens_latest_needs_ratings_only(tmp_path: Path) -> None:
    folder = write_movielens_latest(tmp_path / "ml")
    (folder / "movies.csv").unlink()
    (folder / "tags.csv").unlink()
    assert load_movielens_latest(folder).item_features is None
    (folder / "ratings.csv").unlink()
    with pytest.raises(DataError, match=r"required file 'ratings.csv' not found"):
        load_movielens_latest(folder)


def test_movielens_latest_errors_use_the_file_column_names(tmp_path: Path) -> None:
    folder = write_movielens_latest(tmp_path / "ml")
    with (folder / "ratings.csv").open("a") as handle:
        handle.write("3,,4.0,964982703\n")
    with pytest.raises(DataError) as caught:
        load_movielens_latest(folder)
    assert (caught.value.source, caught.value.row, caught.value.column) == (
        "ratings.csv",
        6,
        "movieId",
    )


# -- Retailrocket (written in the published format) -----------------------------------------
def write_retailrocket(folder: Path) -> Path:
    folder.mkdir()
    (folder / "events.csv").write_text(
        "timestamp,visitorid,event,itemid,transactionid\n"
        "1433221332117,257597,view,355908,\n"
        "1433224214164,992329,view,248676,\n"
        "1433221999827,257597,addtocart,355908,\n"
        "1433222000000,257597,transaction,355908,4000\n"
        "1433223000000,111,view,248676,\n"
    )
    (folder / "item_properties_part1.csv").write_text(
        "timestamp,itemid,property,value\n"
        "1435460400000,355908,categoryid,1338\n"
        "1441508400000,355908,available,1\n"
        "1439089200000,248676,888,1116713 960601 n277.200\n"
        "1431226800000,248676,categoryid,491\n"
    )
    (folder / "item_properties_part2.csv").write_text(
        "timestamp,itemid,property,value\n"
        "1431226800000,355908,categoryid,1000\n"  # older: the category above wins
        "1442113200000,355908,available,0\n"  # newer: now unavailable
        "1433041200000,777,categoryid,491\n"  # an item nobody interacted with
    )
    (folder / "category_tree.csv").write_text(
        "categoryid,parentid\n1338,250\n491,1679\n1679,\n250,\n"
    )
    return folder


def test_retailrocket(tmp_path: Path) -> None:
    dataset = load_retailrocket(write_retailrocket(tmp_path / "retailrocket"))
    assert not dataset.explicit
    assert (len(dataset), dataset.n_users, dataset.n_items) == (3, 3, 3)
    frame = dataset.to_frame().set_index(["user_id", "item_id"])
    # view 1 + addtocart 3 + transaction 5, strongest event kept, milliseconds -> seconds
    assert frame.loc[(257597, 355908), "value"] == 9.0
    assert frame.loc[(257597, 355908), "event"] == "transaction"
    assert frame.loc[(257597, 355908), "timestamp"] == 1433222000
    features = dataset.item_features
    assert features is not None
    rows = features.frame.set_axis(dataset.items.to_external(np.arange(3)).tolist())
    assert rows.loc[355908, "category"] == "1338"
    assert rows.loc[355908, "available"] == 0.0
    assert rows.loc[355908, "parent_category"] == "250"
    assert rows.loc[248676, "category"] == "491" and np.isnan(rows.loc[248676, "available"])
    assert rows.loc[777, "parent_category"] == "1679"  # a cold item in the catalogue
    assert "888" not in rows.columns


def test_retailrocket_custom_weights_and_optional_files(tmp_path: Path) -> None:
    folder = write_retailrocket(tmp_path / "rr")
    for name in ("item_properties_part1.csv", "item_properties_part2.csv", "category_tree.csv"):
        (folder / name).unlink()
    dataset = load_retailrocket(folder, event_weights={"view": 1, "addtocart": 1, "transaction": 1})
    assert dataset.item_features is None
    assert dataset.to_frame()["value"].max() == 3.0


def test_retailrocket_unknown_event_names_the_row(tmp_path: Path) -> None:
    folder = write_retailrocket(tmp_path / "rr")
    with (folder / "events.csv").open("a") as handle:
        handle.write("1433223000000,111,wishlist,248676,\n")
    with pytest.raises(DataError, match=r"unknown event type 'wishlist'") as caught:
        load_retailrocket(folder)
    assert (caught.value.row, caught.value.column) == (7, "event")


# -- Fiverr ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fiverr(datasets_dir: Path) -> Dataset:
    return load_fiverr(datasets_dir / "fiverr")


def test_fiverr_catalogue_and_interactions(fiverr: Dataset, datasets_dir: Path) -> None:
    raw = pd.read_csv(datasets_dir / "fiverr" / "fiverr_data.csv", encoding="utf-8-sig")
    assert raw.columns[0] == "illustrator_name"  # the byte-order mark is not in the name
    assert len(raw) == 2_666
    gigs = raw["gig_url"].map(fiverr_gig_id)
    # Every gig is in the catalogue; 10 gigs are listed twice with different tracking URLs.
    assert fiverr.n_items == gigs.nunique() == 2_656
    assert fiverr.n_users == raw["client_names"].nunique() == 1_637
    with_client = raw.dropna(subset=["client_names"])
    reviewed = zip(with_client["client_names"], gigs[with_client.index], strict=True)
    assert len(fiverr) == len(set(reviewed))
    assert fiverr.interactions["value"].max() == 1.0  # a repeated listing counts once
    assert fiverr.summary()["items_without_interactions"] > 900  # cold gigs


def test_fiverr_features(fiverr: Dataset) -> None:
    features = fiverr.item_features
    assert features is not None and fiverr.user_features is not None
    assert dict(features.kinds) == {
        "gig_design_type": "categorical",
        "gig_design_style": "categorical",
        "gig_price_from": "numeric",
        "gig_rating": "numeric",
        "illustrator_name": "categorical",
        "illustrator_origins": "categorical",
        "text": "text",
    }
    gig = "nadia_younus/do-minimal-and-elegant-logo-design-with-multiple-concepts"
    row = features.frame.iloc[fiverr.items.index_of(gig)]
    assert row["illustrator_name"] == "nadia_younus"
    assert (
        row["text"] == "logos minimalist do minimal and elegant logo design with multiple concepts"
    )
    assert (row["gig_price_from"], row["gig_rating"]) == (60.0, 5.0)
    origins = fiverr.user_features.frame.iloc[fiverr.users.index_of("stoxventures")]
    assert origins["client_origins"] == "Canada"


def test_fiverr_gig_id_drops_tracking() -> None:
    url = "https://www.fiverr.com/seller/do-a-logo?context_referrer=x&pos=2&imp_id=abc"
    assert fiverr_gig_id(url) == "seller/do-a-logo"


def test_fiverr_accepts_the_file_path(datasets_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "gigs.csv"
    shutil.copy(datasets_dir / "fiverr" / "fiverr_data.csv", copy)
    assert load_fiverr(copy).n_items == 2_656
    with pytest.raises(DataError, match=r"required file 'fiverr_data.csv' not found"):
        load_fiverr(tmp_path)


# -- Seefud ---------------------------------------------------------------------------------
def test_seefud(datasets_dir: Path) -> None:
    dataset = load_seefud(datasets_dir / "seefud")
    assert not dataset.explicit
    assert (dataset.n_users, dataset.n_items) == (50, 1_726)
    assert len(dataset) == 2_000 - 28  # repeated (user, title) rows are one pair
    assert dataset.interactions["value"].sum() == 2_000  # ... whose values are summed
    counts = dataset.interactions["count"]
    assert (counts - 1).sum() == 28
    assert (dataset.interactions["value"] == counts).all()
    assert dataset.users.kind == "int" and dataset.items.kind == "str"
    features = dataset.item_features
    assert features is not None
    assert dict(features.kinds) == {"title": "text", "ingredients": "text"}
    row = features.frame.iloc[dataset.items.index_of("telur gulung sosis")]
    assert row["ingredients"] == "butir telur biji sosis royco"
    assert dataset.summary()["items_without_interactions"] == 1_726 - 1_100


def test_seefud_keeps_the_first_of_repeated_titles(tmp_path: Path) -> None:
    (tmp_path / "product3.csv").write_text(
        "Title,Ingredients,Combined\n"
        "soto,ayam,soto ayam\nsoto,sapi,soto sapi\nsate,ayam,sate ayam\n"
    )
    (tmp_path / "user3.csv").write_text(
        "UserID,Title,InteractionType\n1,soto,1\n1,soto,1\n2,sate,0\n2,soto,1\n"
    )
    dataset = load_seefud(tmp_path)
    assert dataset.n_items == 2
    assert dataset.item_features is not None
    assert dataset.item_features.frame["ingredients"].tolist() == ["ayam", "ayam"]
    assert sorted(dataset.interactions["value"].tolist()) == [1.0, 2.0]  # the 0 row is dropped


# -- registry -------------------------------------------------------------------------------
def test_registry_names() -> None:
    assert sorted(DATASETS) == [
        "fiverr",
        "movielens-100k",
        "movielens-latest",
        "retailrocket",
        "seefud",
    ]
    assert all(entry.description for entry in DATASETS.values())


def test_load_builtin(datasets_dir: Path) -> None:
    assert load_builtin("seefud", datasets_dir / "seefud").name == "seefud"
    with pytest.raises(DataError, match=r"unknown data set 'movielens'.*did you mean"):
        load_builtin("movielens", datasets_dir)


@pytest.mark.parametrize("streamed", [True, False])
def test_retailrocket_bad_property_time_names_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streamed: bool
) -> None:
    folder = write_retailrocket(tmp_path / "rr")
    with (folder / "item_properties_part2.csv").open("a") as handle:
        handle.write("1433041200000,778,790,n1.0\nsoon,777,available,1\n")
    if not streamed:
        monkeypatch.setattr(loaders, "_kept_properties_arrow", lambda path: None)
    with pytest.raises(DataError, match=r"expected a number, got 'soon'") as caught:
        load_retailrocket(folder)
    assert (caught.value.source, caught.value.row, caught.value.column) == (
        str(folder / "item_properties_part2.csv"),
        6,
        "timestamp",
    )


def test_builtin_retailrocket_takes_event_weights(tmp_path: Path) -> None:
    from rekko.config import DataSpec

    folder = write_retailrocket(tmp_path / "rr")
    spec = DataSpec(dataset="retailrocket", data_dir=str(folder), event_weights="*=1")
    assert spec.load().to_frame()["value"].max() == 3.0
    assert (
        DataSpec(dataset="retailrocket", data_dir=str(folder)).load().to_frame()["value"].max()
        == 9.0
    )
    with pytest.raises(DataError, match="no event types"):
        load_builtin("seefud", tmp_path, event_weights=EventWeights({"view": 1.0}))
