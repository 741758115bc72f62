"""Spark ALS with real PySpark in local mode: quality on MovieLens-100K, sources, id mapping.

One local[2] session serves the whole module (starting a JVM takes seconds). Small tests use
few iterations; the quality tests use the model defaults.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from rekko.data.dataset import Dataset
from rekko.data.readers import ColumnMap
from rekko.data.splits import RandomSplit
from rekko.errors import DataError, ModelError
from rekko.evaluation.evaluate import Protocol, evaluate, evaluate_recommendations
from rekko.models import available_models, create_model, load_model

pytest.importorskip("pyspark")

from rekko.spark import spark_recommend_all, spark_session, train_spark_als

pytestmark = pytest.mark.slow
QUALITY_FLOOR = 0.30
QUALITY_BAND = 0.05


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    session = spark_session("local[2]")
    yield session


@pytest.fixture(scope="module")
def ml100k_parts(ml100k: Dataset) -> tuple[Dataset, Dataset]:
    return RandomSplit(0.2, seed=42).split(ml100k)


def _ndcg(recs: pd.DataFrame, truth: pd.DataFrame) -> float:
    return evaluate_recommendations(recs, truth)["ndcg@10"]


def test_in_memory_fit_is_in_the_band_of_single_machine_als(
    spark: Any, ml100k_parts: tuple[Dataset, Dataset]
) -> None:
    train, test = ml100k_parts
    models = {"spark-als": create_model("spark-als")}
    if "als" in available_models():
        models["als"] = create_model("als")
    result = evaluate(models, train=train, test=test, protocol=Protocol(beyond_accuracy=False))
    ndcg = dict(zip(result["model"], result["ndcg@10"], strict=True))
    assert ndcg["spark-als"] > QUALITY_FLOOR
    if "als" in ndcg:
        assert abs(ndcg["spark-als"] - ndcg["als"]) <= QUALITY_BAND, ndcg


def test_train_from_csv_then_recommend_in_spark(
    spark: Any, ml100k_parts: tuple[Dataset, Dataset], tmp_path: Path
) -> None:
    train, test = ml100k_parts
    frame = train.to_frame().rename(columns={"user_id": "userId", "item_id": "movieId"})
    frame["userId"] = "u" + frame["userId"].astype(str)  # string ids, mapped by Spark
    frame.to_csv(tmp_path / "ratings.csv", index=False)
    truth = test.to_frame()
    truth["user_id"] = "u" + truth["user_id"].astype(str)

    folder = train_spark_als(
        tmp_path / "ratings.csv",
        output=tmp_path / "model",
        columns=ColumnMap(user="userId", item="movieId"),
        session=spark,
    )
    model = load_model(folder)
    assert model.name == "spark-als"
    assert model.users_ is not None and model.items_ is not None and model.seen_ is not None
    assert model.users_.kind == "str" and model.items_.kind == "int"
    assert len(model.users_) == frame["userId"].nunique()
    assert len(model.items_) == frame["movieId"].nunique()
    assert model.seen_.nnz == len(train)
    assert model.metadata_["engine"] == "spark" and model.metadata_["n_interactions"] == len(train)

    users = list(truth["user_id"].unique())
    local = model.recommend(users, k=10)
    assert _ndcg(local, truth) > QUALITY_FLOOR

    output = spark_recommend_all(folder, 10, tmp_path / "recs.parquet", session=spark)
    batch = pd.read_parquet(output)
    assert list(batch.columns) == ["user_id", "item_id", "rank", "score"]
    assert batch["user_id"].nunique() == len(model.users_)
    assert (batch.groupby("user_id").size() == 10).all()
    sample = sorted(users)[:50]
    ours = batch[batch["user_id"].isin(sample)].sort_values(["user_id", "rank"])
    theirs = local[local["user_id"].isin(sample)].sort_values(["user_id", "rank"])
    assert ours["item_id"].tolist() == theirs["item_id"].tolist()
    np.testing.assert_allclose(ours["score"], theirs["score"], rtol=1e-4, atol=1e-5)
    assert _ndcg(batch, truth) == pytest.approx(_ndcg(local, truth), abs=1e-9)


def test_explicit_als_from_parquet_predicts_ratings(spark: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(42)
    frame = pd.DataFrame(
        {
            "user_id": rng.integers(0, 40, 600),
            "item_id": rng.integers(100, 130, 600),
            "rating": rng.integers(1, 6, 600).astype(float),
            "timestamp": np.arange(600),
        }
    )
    frame.to_parquet(tmp_path / "ratings.parquet", index=False)
    folder = train_spark_als(
        tmp_path / "ratings.parquet",
        output=tmp_path / "model",
        implicit=False,
        factors=4,
        iterations=3,
        session=spark,
    )
    model = load_model(folder)
    assert model.abilities.explicit
    expected = Dataset.from_frame(frame)  # the last rating of a repeated pair wins
    assert model.users_ is not None and model.seen_ is not None and model.items_ is not None
    assert sorted(model.users_.external_ids.tolist()) == sorted(expected.users.external_ids)
    pairs = expected.to_frame()
    users = model.users_.to_index(pairs["user_id"])
    items = model.items_.to_index(pairs["item_id"])
    np.testing.assert_array_equal(model.seen_[users, items].A1, pairs["rating"].to_numpy())
    predicted = model.predict([0, 1, "unknown"], [100, 101, 100])
    assert predicted.shape == (3,) and ((predicted >= 1) & (predicted <= 5)).all()
    frame.rename(columns={"rating": "value"}).to_parquet(tmp_path / "values.parquet")
    with pytest.raises(ModelError, match="needs a rating column"):
        train_spark_als(
            tmp_path / "values.parquet", output=tmp_path / "again", implicit=False, session=spark
        )


def test_jdbc_table_with_weighted_events(spark: Any, tmp_path: Path) -> None:
    rows = [
        ("a", "007", "view"),
        ("a", "008", "buy"),
        ("b", "007", "view"),
        ("b", "009", "view"),
        ("c", "008", "view"),
        ("a", "007", "view"),
    ]
    url = "jdbc:derby:memory:rekko_test;create=true"
    driver = {"driver": "org.apache.derby.jdbc.EmbeddedDriver"}
    frame = spark.createDataFrame(rows, ["visitor", "product", "kind"])
    writer = frame.write.format("jdbc").option("url", url).option("dbtable", "EVENTS")
    writer.options(**driver).mode("overwrite").save()
    folder = train_spark_als(
        jdbc_url=url,
        table="EVENTS",
        jdbc_options=driver,
        columns=ColumnMap(user="visitor", item="product", event="kind"),
        event_weights={"view": 1.0, "buy": 3.0},
        output=tmp_path / "model",
        factors=4,
        iterations=3,
        session=spark,
    )
    model = load_model(folder)
    assert model.items_ is not None and model.users_ is not None and model.seen_ is not None
    assert model.items_.kind == "str"  # "007" keeps its leading zeros
    assert model.items_.external_ids.tolist() == ["007", "008", "009"]
    assert model.users_.external_ids.tolist() == ["a", "b", "c"]
    np.testing.assert_array_equal(
        model.seen_.toarray(), [[2.0, 3.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    )
    assert model.recommend(["c"], k=2)["item_id"].tolist()[0] in {"007", "009"}


def test_bad_data_is_reported_with_source_and_column(spark: Any, tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("visitor,item_id,value\na,x,1\nb,y,-2\n")
    with pytest.raises(DataError, match="did you mean 'visitor'"):
        train_spark_als(path, output=tmp_path / "m", session=spark)
    with pytest.raises(DataError, match=r"events\.csv.*column 'value'.*>= 0"):
        train_spark_als(
            path, output=tmp_path / "m", columns=ColumnMap(user="visitor"), session=spark
        )
    (tmp_path / "kinds.csv").write_text("user_id,item_id,event\na,x,view\nb,y,like\n")
    with pytest.raises(DataError, match="event type that has no weight"):
        train_spark_als(
            tmp_path / "kinds.csv",
            output=tmp_path / "m",
            event_weights={"view": 1.0},
            session=spark,
        )
    with pytest.raises(DataError, match="file not found"):
        train_spark_als(tmp_path / "missing.csv", output=tmp_path / "m", session=spark)
    with pytest.raises(ModelError, match="factors"):
        train_spark_als(path, output=tmp_path / "m", factors=0, session=spark)
    assert not (tmp_path / "m").exists()


def test_explicit_als_predicts_movielens_ratings(spark: Any, datasets_dir: Path) -> None:
    from rekko.data.loaders import load_movielens_split

    train, test = load_movielens_split(datasets_dir / "ml-100k", "u1")
    model = create_model("spark-als", implicit=False).fit(train)  # regularization 0.1
    pairs = test.interactions
    predicted = model.predict(
        list(train.users.to_external(pairs["user"])),
        list(train.items.to_external(pairs["item"])),
    )
    rmse = float(np.sqrt(np.mean((predicted - pairs["value"].to_numpy()) ** 2)))
    # Spark's explicit ALS lands near Surprise's SVD (0.956); the mean rating alone gives 1.15.
    assert 0.88 <= rmse <= 0.96, rmse
