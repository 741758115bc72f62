"""The work behind the ``rekko`` commands, callable from Python without the command line:
train, recommend, query, predict, evaluate and tune, and explore, split or summarise a data set.

Training, recommending, evaluating and tuning take a typed spec: the data (a
:class:`~rekko.config.DataSpec`) or the model folder, the model(s) and their parameters, the
engine and where to write; each function loads what it needs, does the work and returns what it
did. Errors are :class:`~rekko.errors.RekkoError` subclasses whose messages name the flag (or
config key) to change, as the command line prints them. Nothing here prints: results are
returned, long steps are reported to :mod:`rekko.progress` (by the models), the rest is logged;
a caller that shows what was loaded passes ``loaded``, called with the data set before the work
on it starts.

Training runs in this process (``engine="local"``) or with Spark MLlib (``engine="spark"``,
ALS only): from a built-in data set loaded here into the shared local Spark session, else from
the interactions source read by Spark itself on ``master``. Recommending with Spark ranks a
factor model's users exactly in Spark and writes a Parquet folder.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from rekko.config import BUILTIN_DEMO, DataSpec
from rekko.data.dataset import Dataset, EventWeights
from rekko.errors import DataError

if TYPE_CHECKING:
    from rekko.constraints import Constraint
    from rekko.evaluation import Protocol
    from rekko.index.ann import IndexMode
    from rekko.reports.charts import ImageFormat
    from rekko.tuning import TuneResult

logger = logging.getLogger(__name__)

#: Called with the data set once it is loaded, before the work on it starts.
Loaded = Callable[[Dataset], None]

#: Where training runs: in this process, or with Spark MLlib.
Engine = Literal["local", "spark"]
ENGINES: tuple[Engine, ...] = ("local", "spark")
#: The models ``engine="spark"`` trains (both as spark-als), and its default master.
SPARK_MODELS = ("spark-als", "als")
SPARK_MODEL = "spark-als"
DEFAULT_MASTER = "local[*]"


# -- train ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainSpec:
    """What to train on which data, where to save it, and where the training runs.

    ``model`` and ``output`` are required (``model`` defaults to spark-als with the Spark
    engine); ``master`` is the Spark master (``local[*]`` by default) and only goes with the
    Spark engine. A spec is checked when it is made: a bad combination raises a
    :class:`DataError` naming the flag, before any data is read.
    """

    data: DataSpec
    model: str | None = None
    output: Path | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    engine: Engine = "local"
    master: str | None = None

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise DataError(f"--engine must be local or spark, got {self.engine!r}")
        model, _ = self.model_and_output()
        if self.engine == "local":
            if self.master is not None:
                raise DataError("--master only applies with --engine spark")
            return
        from rekko.models.spark_als import SparkALSParams

        if model not in SPARK_MODELS:
            raise DataError(f"--engine spark trains ALS (--model spark-als or als), not {model!r}")
        unknown = sorted(set(self.params) - set(SparkALSParams.model_fields))
        if unknown:
            raise DataError(
                f"unknown {SPARK_MODEL} parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(SparkALSParams.model_fields)}"
            )
        if self.data.feature_settings():
            raise DataError(
                "--engine spark trains on interactions only: drop --items, --users and their kinds"
            )

    def model_and_output(self) -> tuple[str, Path]:
        """The model to train (spark-als by default with Spark) and the folder to write."""
        model = self.model
        if model is None and self.engine == "spark":
            model = SPARK_MODEL
        if model is None or self.output is None:
            raise DataError(
                "train needs --model and --output (or [train] model/output in --config)"
            )
        return model, self.output

    def describe(self) -> str:
        """The training in a few words, for a progress display."""
        if self.engine != "spark":
            return f"Training {self.model}"
        if self.data.dataset is not None:
            return f"Training {SPARK_MODEL} in Spark"
        return f"Training {SPARK_MODEL} in Spark ({self.master or DEFAULT_MASTER})"


@dataclass(frozen=True)
class TrainResult:
    """A trained model folder: which model, where, and how long training took.

    ``seconds`` times the fit (with Spark: reading the data too). ``data`` is the data set
    loaded in this process, ``None`` when Spark read the source itself.
    """

    model: str
    output: Path
    seconds: float
    data: Dataset | None = None


def train(spec: TrainSpec, *, loaded: Loaded | None = None) -> TrainResult:
    """Train ``spec.model`` on ``spec.data`` and save it to ``spec.output``.

    The model and its parameters are checked before any data is read.
    """
    model, output = spec.model_and_output()
    if spec.engine == "spark":
        return _train_in_spark(spec, output, loaded)
    from rekko.models import create_model

    recommender = create_model(model, **spec.params)
    data = _load(spec.data, loaded)
    started = time.perf_counter()
    recommender.fit(data)
    seconds = time.perf_counter() - started
    recommender.save(output)
    logger.info("trained %s in %.2f s; saved to %s", model, seconds, output)
    return TrainResult(model, output, seconds, data)


def _train_in_spark(spec: TrainSpec, output: Path, loaded: Loaded | None) -> TrainResult:
    """Spark MLlib ALS from a built-in data set, a file, a folder or a database table."""
    from rekko.models import create_model

    data = spec.data
    started = time.perf_counter()
    dataset = None
    if data.dataset is not None:
        # A built-in data set is loaded here and handed to the shared local Spark session.
        from rekko.spark.session import MASTER_ENV

        if spec.master is not None:
            os.environ[MASTER_ENV] = spec.master
        dataset = _load(data, loaded)
        recommender = create_model(SPARK_MODEL, **spec.params)
        recommender.fit(dataset)
        recommender.save(output)
    else:
        from rekko.spark import train_spark_als

        if data.interactions is None:
            raise DataError("no data: give --interactions PATH or URL (or --dataset)")
        train_spark_als(
            data.interactions,
            output=output,
            columns=data.columns(),
            master=spec.master or DEFAULT_MASTER,
            table=data.table,
            query=data.query,
            event_weights=EventWeights.parse(data.event_weights) if data.event_weights else None,
            aggregate=data.aggregate,
            **spec.params,
        )
    seconds = time.perf_counter() - started
    logger.info("trained %s in Spark in %.2f s; saved to %s", SPARK_MODEL, seconds, output)
    return TrainResult(SPARK_MODEL, output, seconds, dataset)


def _load(data: DataSpec, loaded: Loaded | None) -> Dataset:
    """The data set of ``data``, handed to ``loaded`` (if given) before it is returned."""
    dataset = data.load()
    logger.info("loaded %s", dataset)
    if loaded is not None:
        loaded(dataset)
    return dataset


# -- recommend, query, predict, similar: from a model folder -------------------------------
@dataclass(frozen=True)
class RecommendSpec:
    """Top-``k`` lists from a trained model folder, for some users or all of them.

    Give ``users`` (external ids) or ``all_users``, not both. ``filters`` (a constraint over
    item attributes) and ``index`` (the top-K search of factor models: auto, exact or ann)
    apply to the local engine. ``engine="spark"`` ranks every user (or ``users``) exactly in
    Spark on ``master`` (``local[*]`` by default) and writes the Parquet folder ``output``;
    locally, ``output`` is where the caller writes the frame. A spec is checked when it is
    made: a bad combination raises a :class:`DataError` naming the flag.
    """

    model: Path
    users: Sequence[object] = ()
    all_users: bool = False
    k: int = 10
    exclude_seen: bool = True
    filters: Constraint | None = None
    index: IndexMode | None = None
    engine: Engine = "local"
    master: str | None = None
    output: Path | None = None

    def __post_init__(self) -> None:
        from rekko.index.ann import INDEX_MODES

        if self.all_users == bool(self.users):
            raise DataError("give either --user ID (one or more) or --all-users")
        if self.k < 1:
            raise DataError(f"-k must be at least 1, got {self.k}")
        if self.engine not in ENGINES:
            raise DataError(f"--engine must be local or spark, got {self.engine!r}")
        if self.index is not None and self.index not in INDEX_MODES:
            raise DataError(f"--index must be one of {', '.join(INDEX_MODES)}, got {self.index!r}")
        if self.engine == "local":
            if self.master is not None:
                raise DataError("--master only applies with --engine spark")
            return
        if self.output is None or self.filters is not None or self.index is not None:
            raise DataError(
                "--engine spark needs --output (a Parquet folder), and no --filter "
                "or --index (Spark ranks exactly)"
            )

    def describe(self) -> str:
        """The ranking in a few words, for a progress display."""
        if self.engine == "spark":
            return f"Ranking in Spark ({self.master or DEFAULT_MASTER})"
        who = "every user" if self.all_users else f"{len(self.users)} user(s)"
        return f"Recommending for {who}"


def recommend(spec: RecommendSpec) -> pd.DataFrame | None:
    """The top ``spec.k`` items per user: ``user_id, item_id, rank, score`` (rank 1 is best).

    Returns the frame, or ``None`` with the Spark engine, which writes the Parquet folder
    ``spec.output`` instead.
    """
    users = None if spec.all_users else list(spec.users)
    if spec.engine == "spark":
        from rekko.spark import spark_recommend_all

        assert spec.output is not None  # checked by the spec
        spark_recommend_all(
            spec.model,
            spec.k,
            spec.output,
            users=users,
            exclude_seen=spec.exclude_seen,
            master=spec.master or DEFAULT_MASTER,
        )
        logger.info("wrote the top %d per user to %s", spec.k, spec.output)
        return None
    from rekko.models import load_model

    recommender = load_model(spec.model)
    if spec.index is not None:
        recommender.index_mode = spec.index
    targets = list(recommender.fitted().users.external_ids) if users is None else users
    return recommender.recommend(
        targets, spec.k, exclude_seen=spec.exclude_seen, filters=spec.filters
    )


@dataclass(frozen=True)
class QuerySpec:
    """Items for someone with no history, from a trained model folder.

    Give ``text`` (free text), ``preferences`` (item feature -> wanted value(s)), a ``basket``
    (ids of items the visitor interacted with) or several; ``filters`` limits the items.
    """

    model: Path
    text: str | None = None
    preferences: Mapping[str, Any] | None = None
    basket: Sequence[object] = ()
    k: int = 10
    filters: Constraint | None = None

    def __post_init__(self) -> None:
        if self.text is None and self.preferences is None and not self.basket:
            raise DataError("give --text, --prefer, --basket or several")
        if self.preferences is not None and (
            not isinstance(self.preferences, Mapping) or not self.preferences
        ):
            raise DataError('--prefer must be a JSON object, e.g. {"category": "books"}')


def query(spec: QuerySpec) -> pd.DataFrame:
    """The top ``spec.k`` items for the query: ``item_id, rank, score``.

    ``attrs["source"]`` names the route that answered (the model's own scoring, or a shared
    route: basket, keywords, preferences, popularity), ``attrs.get("note")`` why, if a later
    route answered.
    """
    from rekko.models import Query, load_model

    wanted = Query(
        text=spec.text,
        preferences=dict(spec.preferences) if spec.preferences is not None else None,
        basket=list(spec.basket),
    )
    return load_model(spec.model).recommend_query(wanted, spec.k, filters=spec.filters)


def predict(model: Path, pairs: Path) -> pd.DataFrame:
    """Predicted ratings for the ``user_id, item_id`` pairs of the CSV file ``pairs``:
    ``user_id, item_id, prediction`` (models trained on explicit ratings)."""
    from rekko.models import load_model

    recommender = load_model(model)
    frame = _read_csv(pairs)
    missing = {"user_id", "item_id"} - set(frame.columns)
    if missing:
        raise DataError(f"missing column(s) {sorted(missing)}", source=str(pairs))
    frame["prediction"] = recommender.predict(list(frame["user_id"]), list(frame["item_id"]))
    return frame[["user_id", "item_id", "prediction"]]


def similar(model: Path, items: Sequence[object], k: int = 10) -> pd.DataFrame:
    """The ``k`` items most similar to each of ``items``, from a trained model folder."""
    from rekko.models import load_model

    return load_model(model).similar_items(items, k)


# -- data sets -----------------------------------------------------------------------------
def explore(
    data: DataSpec,
    output: Path,
    *,
    images: ImageFormat | None = None,
    loaded: Loaded | None = None,
) -> Path:
    """Write an HTML report of ``data`` to ``output`` (and each chart as an ``images`` file);
    returns the report's path."""
    if images not in (None, "svg", "png"):
        raise DataError("--images must be svg or png")
    from rekko.reports import explore_report

    return explore_report(_load(data, loaded), output, image_format=images)


@dataclass(frozen=True)
class SplitResult:
    """The interactions of the training and test parts (aggregated pairs)."""

    train: pd.DataFrame
    test: pd.DataFrame
    data: Dataset


def split(
    data: DataSpec,
    strategy: str = "random",
    *,
    test_fraction: float = 0.2,
    seed: int = 42,
    loaded: Loaded | None = None,
) -> SplitResult:
    """Split the interactions of ``data`` into a training and a test part (see
    :func:`rekko.data.splits.make_split` for the strategies)."""
    from rekko.data.splits import make_split

    splitter = make_split(strategy, test_fraction=test_fraction, seed=seed)
    dataset = _load(data, loaded)
    train_part, test_part = splitter.split(dataset)
    return SplitResult(train_part.to_frame(), test_part.to_frame(), dataset)


def summarize(data: DataSpec, *, loaded: Loaded | None = None) -> dict[str, Any]:
    """The summary of a data set (counts, density, cold-start shares); the demo shop when
    ``data`` names no data set and no interactions."""
    if data.dataset is None and data.interactions is None:
        data = data.model_copy(update={"dataset": BUILTIN_DEMO})
    return _load(data, loaded).summary()


@dataclass(frozen=True)
class DemoResult:
    """What the demo did: the data, the offline evaluation, the folder, the lists shown."""

    data: Dataset
    metrics: pd.DataFrame
    output: Path
    recommendations: pd.DataFrame


def demo(
    model: str = "ease",
    output: Path = Path("models/demo"),
    *,
    users: int = 3,
    k: int = 5,
    loaded: Loaded | None = None,
) -> DemoResult:
    """The main job on the built-in demo shop: compare ``model`` with popularity on a per-user
    80/20 split, train ``model`` on all data, save it to ``output`` and recommend ``k`` items
    (with their titles) to the first ``users`` users."""
    from rekko.data.splits import RandomSplit
    from rekko.evaluation import evaluate as run_evaluation
    from rekko.models import create_model

    names = dict.fromkeys([model, "popularity"])
    candidates = {name: create_model(name) for name in names}
    data = _load(DataSpec(dataset=BUILTIN_DEMO), loaded)
    metrics = run_evaluation(candidates, data, RandomSplit())
    recommender = create_model(model).fit(data)
    recommender.save(output)
    logger.info("saved the %s model trained on all data to %s", model, output)
    recs = recommender.recommend(list(data.users.external_ids[:users]), k)
    if data.item_features is not None and "title" in data.item_features.frame:
        titles = data.item_features.frame["title"].to_numpy()
        recs["title"] = titles[data.items.to_index(recs["item_id"])]
    return DemoResult(data, metrics, output, recs)


# -- evaluate ------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvaluateSpec:
    """Models to compare on one split of the data, what to measure, and an optional report.

    ``models`` maps each model name to its parameters (``{}`` for the defaults), in the order
    of the result's rows. ``tuned`` adds model folders (as ``rekko tune --output`` writes):
    each one's model with its saved parameters, fitted again on the training part and labelled
    ``<folder name> (tuned <model>)``. ``images`` ("svg" or "png") also writes the report's
    charts as files and needs ``report``; a spec is checked when it is made.
    """

    data: DataSpec
    models: Mapping[str, Mapping[str, Any]]
    split: str = "random"
    test_fraction: float = 0.2
    seed: int = 42
    protocol: Protocol | None = None
    report: Path | None = None
    images: ImageFormat | None = None
    tuned: Sequence[Path] = ()

    def __post_init__(self) -> None:
        if self.images is not None and (self.images not in ("svg", "png") or self.report is None):
            raise DataError("--images must be svg or png, and goes with --report")


@dataclass(frozen=True)
class EvaluateResult:
    """One row of metrics per model, the data set they were scored on, the report written."""

    metrics: pd.DataFrame
    data: Dataset
    report: Path | None = None
    warnings: tuple[str, ...] = ()


def evaluate_models(spec: EvaluateSpec, *, loaded: Loaded | None = None) -> EvaluateResult:
    """Fit each model of ``spec.models`` on the same training part and score it on the test part.

    The models and their parameters are checked before any data is read. A tuned folder whose
    search validated on part of this split's test part gives a warning (logged, and in
    ``warnings``).
    """
    from rekko.data.splits import make_split
    from rekko.evaluation import evaluate
    from rekko.models import create_model, load_model

    candidates = {name: create_model(name, **params) for name, params in spec.models.items()}
    tunings: dict[str, Mapping[str, Any]] = {}
    for folder in spec.tuned:
        saved = load_model(folder)
        label = f"{Path(folder).name} (tuned {saved.name})"
        candidates[label] = create_model(saved.name, **saved.params.model_dump())
        tunings[label] = saved.metadata_.get("tuning", {})
    data = _load(spec.data, loaded)
    warnings = []
    for label, tuning in tunings.items():
        reason = tuning_overlap(tuning, data, spec.split, spec.test_fraction, spec.seed)
        if reason is not None:
            warnings.append(f"{label}: {reason}")
            logger.warning("%s", warnings[-1])
    splitter = make_split(spec.split, test_fraction=spec.test_fraction, seed=spec.seed)
    if spec.report is None:
        metrics = evaluate(candidates, data, splitter, protocol=spec.protocol)
        return EvaluateResult(metrics, data, warnings=tuple(warnings))
    from rekko.reports import evaluate_with_details, evaluation_report

    details = evaluate_with_details(candidates, data, splitter, protocol=spec.protocol)
    report = evaluation_report(
        details,
        spec.report,
        subtitle=f"{data.name}, {spec.split} split, seed {spec.seed}",
        image_format=spec.images,
    )
    return EvaluateResult(details.metrics, data, report, tuple(warnings))


def score_recommendations(
    recommendations: Path,
    test: Path,
    ks: Sequence[int] = (10,),
    *,
    relevance_threshold: float | None = None,
    train: Path | None = None,
) -> pd.DataFrame:
    """Score a recommendations CSV (as ``rekko recommend`` writes) against test interactions.

    One row: the file's name and the ranking metrics at each cut-off of ``ks`` (test items
    rated below ``relevance_threshold`` are not relevant); with the ``train`` interactions
    CSV also coverage, novelty and popularity at the largest cut-off.
    """
    from rekko.evaluation import Protocol, evaluate_recommendations

    scores = evaluate_recommendations(
        _read_csv(recommendations),
        _read_csv(test),
        protocol=Protocol(
            ks=tuple(ks),
            relevance_threshold=relevance_threshold,
            beyond_accuracy=train is not None,
        ),
        train=_read_csv(train) if train is not None else None,
    )
    return pd.DataFrame([{"recommendations": recommendations.name, **scores}])


def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV file as strings; a missing or unreadable file is a :class:`DataError` naming it."""
    try:
        return pd.read_csv(path, dtype=str, encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError("file not found", source=str(path)) from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as error:
        raise DataError(f"cannot read CSV ({error})", source=str(path)) from None


# -- tune ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TuneSpec:
    """A model to tune (or ``"auto"``: the best of the tuned families) on the given data.

    The search never sees the test part of ``split`` / ``test_fraction`` / ``seed`` (by default
    the split ``rekko evaluate`` makes): it runs on an inner split of the training part, so
    that evaluating the tuned parameters on that split is honest. ``output``: also train the
    best model with its best parameters on all the data there; its metadata records the split
    held out (see :func:`tuning_overlap`).
    """

    data: DataSpec
    model: str
    trials: int = 20
    metric: str = "ndcg@10"
    seed: int = 42
    output: Path | None = None
    split: str = "random"
    test_fraction: float = 0.2


@dataclass(frozen=True)
class TuneOutcome:
    """The best model and parameters found, on which data, and the model folder written.

    ``summary`` (with ``model="auto"``) has the best trial of each family; the trials of the
    model tuned are in ``best.trials``.
    """

    best: TuneResult
    data: Dataset
    summary: pd.DataFrame | None = None
    output: Path | None = None


def tune(spec: TuneSpec, *, loaded: Loaded | None = None) -> TuneOutcome:
    """Tune hyperparameters (Optuna) on an inner split of the training part of ``spec.split``.

    The test part of that split (the one ``rekko evaluate`` makes with the same split, test
    fraction and seed) takes no part in the search.
    """
    from rekko.data.splits import make_split
    from rekko.tuning import select
    from rekko.tuning import tune as run_tuning

    held_out = make_split(spec.split, test_fraction=spec.test_fraction, seed=spec.seed)
    data = _load(spec.data, loaded)
    search_part, _ = held_out.split(data)
    summary = None
    if spec.model == "auto":
        best, summary = select(search_part, trials=spec.trials, metric=spec.metric, seed=spec.seed)
    else:
        best = run_tuning(
            spec.model, search_part, trials=spec.trials, metric=spec.metric, seed=spec.seed
        )
    logger.info("best %s: %s=%.4f %s", best.model, spec.metric, best.best_score, best.best_params)
    if spec.output is not None:
        from rekko.models import create_model

        recommender = create_model(best.model, **best.best_params).fit(data)
        recommender.metadata_["tuning"] = {
            "data_fingerprint": data.fingerprint(),
            "held_out": {
                "split": spec.split,
                "test_fraction": spec.test_fraction,
                "seed": spec.seed,
            },
            "metric": best.metric,
            "validation_score": best.best_score,
        }
        recommender.save(spec.output)
        logger.info("trained %s on all data; saved to %s", best.model, spec.output)
    return TuneOutcome(best, data, summary, spec.output)


def tuning_overlap(
    tuning: Mapping[str, Any], data: Dataset, split: str, test_fraction: float, seed: int
) -> str | None:
    """Why a model tuned as ``tuning`` (a model folder's metadata) scores optimistically on this
    split of ``data``, or ``None`` when its search never saw the split's test part.

    The search saw every interaction of the data it was tuned on except the test part of the
    split it held out; on the same data, another split's test part overlaps what it saw.
    """
    if tuning.get("data_fingerprint") != data.fingerprint():
        return None
    held_out = tuning.get("held_out")
    if held_out == {"split": split, "test_fraction": test_fraction, "seed": seed}:
        return None
    kept = (
        f"the {held_out['split']} split (test fraction {held_out['test_fraction']}, seed "
        f"{held_out['seed']})"
        if isinstance(held_out, Mapping)
        else "nothing"
    )
    return (
        f"its parameters were tuned on this data holding out {kept}, so this {split} split "
        f"(test fraction {test_fraction}, seed {seed}) tests it on interactions the search "
        "validated on: the figures are optimistic. Evaluate with the split tune held out."
    )
