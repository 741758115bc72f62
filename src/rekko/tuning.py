"""Hyperparameter search with Optuna, on an inner validation split of the training data only.

``tune`` searches one model family; ``select`` tunes several families and keeps the best, for
``rekko tune --model auto``. The test part of an evaluation never takes part: callers pass
training data, and both functions split it again into fit and validation parts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from rekko import progress
from rekko.data.dataset import Dataset
from rekko.data.splits import RandomSplit, Split
from rekko.errors import ModelError
from rekko.evaluation.evaluate import Protocol, TestSet, score_rankings
from rekko.evaluation.metrics import RANKING_METRICS
from rekko.models.registry import available_models, create_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dimension:
    """One hyperparameter's range: ``int``, ``float`` (``log`` for a log scale) or ``choice``."""

    kind: Literal["int", "float", "choice"]
    low: float = 0
    high: float = 1
    log: bool = False
    choices: tuple[Any, ...] = ()


def _int(low: int, high: int, log: bool = False) -> Dimension:
    return Dimension("int", low, high, log)


def _float(low: float, high: float, log: bool = False) -> Dimension:
    return Dimension("float", low, high, log)


def _choice(*choices: Any) -> Dimension:
    return Dimension("choice", choices=tuple(choices))


#: Search spaces by model name. Parameters not listed keep their defaults.
SEARCH_SPACES: dict[str, dict[str, Dimension]] = {
    "popularity": {"weighted": _choice(False, True)},
    "ease": {"l2": _float(10, 5000, log=True)},
    "sparse-ease": {
        "l2": _float(10, 5000, log=True),
        "k_neighbors": _int(20, 1000, log=True),
    },
    "item-knn": {
        "k_neighbors": _int(10, 400, log=True),
        "weighting": _choice("none", "tfidf", "bm25"),
        "shrinkage": _float(0, 100),
    },
    "user-knn": {
        "k_neighbors": _int(10, 400, log=True),
        "weighting": _choice("none", "tfidf", "bm25"),
        "shrinkage": _float(0, 100),
    },
    "rp3beta": {
        "alpha": _float(0.3, 1.5),
        "beta": _float(0.0, 1.0),
        "k_neighbors": _int(10, 400, log=True),
        "values": _choice("binary", "log"),
    },
    "als": {
        "factors": _int(16, 256, log=True),
        # Around the defaults (48 and 6): quality follows regularization / alpha (about 8).
        "regularization": _float(1, 500, log=True),
        "alpha": _float(0.5, 50, log=True),
        "iterations": _int(5, 30),
    },
    "bpr": {
        "factors": _int(16, 256, log=True),
        "learning_rate": _float(1e-3, 0.2, log=True),
        "regularization": _float(1e-4, 0.1, log=True),
        "iterations": _int(20, 300, log=True),
    },
    "content": {
        "text_weight": _float(0, 2),
        "category_weight": _float(0, 2),
        "numeric_weight": _float(0, 1),
    },
}

#: Families ``select`` tries by default (those that exist in this installation).
AUTO_FAMILIES: tuple[str, ...] = ("ease", "als", "item-knn", "bpr", "popularity")


@dataclass
class TuneResult:
    """The best parameters found, their validation score, and every trial."""

    model: str
    metric: str
    best_params: dict[str, Any]
    best_score: float
    trials: pd.DataFrame = field(repr=False)


def _space(model: str, space: Mapping[str, Dimension] | None) -> Mapping[str, Dimension]:
    chosen = space if space is not None else SEARCH_SPACES.get(model)
    if chosen is None:
        raise ModelError(f"no search space for model '{model}': pass one, or tune another model")
    known = set(create_model(model).params.model_dump())
    unknown = set(chosen) - known
    if unknown:
        raise ModelError(f"search space for '{model}' names unknown parameters {sorted(unknown)}")
    return chosen


def tune(
    model: str,
    train: Dataset,
    *,
    trials: int = 20,
    metric: str = "ndcg@10",
    validation: Split | None = None,
    space: Mapping[str, Dimension] | None = None,
    seed: int = 42,
    timeout_s: float | None = None,
) -> TuneResult:
    """Search ``model``'s hyperparameters; the first trial is always the defaults."""
    import optuna

    if trials < 1:
        raise ModelError("tune needs at least one trial")
    dims = _space(model, space)
    metric_name, _, cut = metric.partition("@")
    if metric_name not in RANKING_METRICS or not (cut == "" or (cut.isdigit() and int(cut) > 0)):
        raise ModelError(
            f"tune ranks items: --metric must be one of {', '.join(sorted(RANKING_METRICS))} "
            f"with an optional @K (e.g. ndcg@10), got {metric!r}"
        )
    metric = f"{metric_name}@{int(cut or 10)}"
    fit_part, valid_part = (validation or RandomSplit(0.2, seed=seed)).split(train)
    protocol = Protocol(ks=(int(cut or 10),), metrics=(metric_name,), beyond_accuracy=False)
    tests = TestSet.build(fit_part, valid_part, None)
    defaults = create_model(model).params.model_dump()

    def objective(trial: optuna.Trial) -> float:
        params: dict[str, Any] = {}
        for name, dim in dims.items():
            if dim.kind == "int":
                params[name] = trial.suggest_int(name, int(dim.low), int(dim.high), log=dim.log)
            elif dim.kind == "float":
                params[name] = trial.suggest_float(name, dim.low, dim.high, log=dim.log)
            else:
                params[name] = trial.suggest_categorical(name, list(dim.choices))
        started = time.perf_counter()
        candidate = create_model(model, **params).fit(fit_part)
        ranked = candidate.rank(tests.users, max(protocol.ks)).items
        score = score_rankings(ranked, tests, fit_part, protocol)[metric]
        trial.set_user_attr("seconds", time.perf_counter() - started)
        progress.step(f"{model} trials", trial.number + 1, trials)
        return score

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial(
        {name: defaults[name] for name in dims if _fits(defaults[name], dims[name])},
        skip_if_exists=True,
    )
    study.optimize(objective, n_trials=trials, timeout=timeout_s)
    table = study.trials_dataframe(attrs=("number", "value", "params", "user_attrs"))
    table = table.rename(columns={"value": metric})
    best = {**defaults, **study.best_params}
    return TuneResult(model, metric, best, float(study.best_value), table)


def _fits(value: Any, dim: Dimension) -> bool:
    if dim.kind == "choice":
        return value in dim.choices
    return isinstance(value, (int, float)) and dim.low <= value <= dim.high


def select(
    train: Dataset,
    *,
    families: Sequence[str] | None = None,
    trials: int = 10,
    metric: str = "ndcg@10",
    seed: int = 42,
) -> tuple[TuneResult, pd.DataFrame]:
    """Tune each family on the same inner split and return the best, with a summary table."""
    registered = set(available_models())
    names = [name for name in (families or AUTO_FAMILIES) if name in registered]
    if not names:
        raise ModelError("none of the model families to select from is available")
    results = [tune(name, train, trials=trials, metric=metric, seed=seed) for name in names]
    summary = pd.DataFrame(
        [{"model": r.model, metric: r.best_score, "params": r.best_params} for r in results]
    ).sort_values(metric, ascending=False, kind="stable")
    return max(results, key=lambda r: r.best_score), summary.reset_index(drop=True)
