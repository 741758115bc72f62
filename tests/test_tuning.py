from __future__ import annotations

import pytest

from rekko.data.dataset import Dataset
from rekko.errors import ModelError
from rekko.models import create_model
from rekko.tuning import SEARCH_SPACES, Dimension, select, tune


def test_tune_starts_from_the_defaults_and_never_gets_worse(small_demo: Dataset) -> None:
    result = tune("content", small_demo, trials=4, seed=1)
    assert len(result.trials) == 4
    first = result.trials.iloc[0]
    defaults = create_model("content").params
    assert first["params_text_weight"] == defaults.text_weight  # type: ignore[attr-defined]
    assert result.best_score >= float(first["ndcg@10"])
    assert result.best_score == pytest.approx(result.trials["ndcg@10"].max())
    create_model("content", **result.best_params)  # the best parameters are valid


def test_tune_is_deterministic_for_a_seed(small_demo: Dataset) -> None:
    first = tune("popularity", small_demo, trials=3, seed=7)
    second = tune("popularity", small_demo, trials=3, seed=7)
    assert first.best_params == second.best_params
    assert first.best_score == second.best_score


def test_select_picks_the_best_family(small_demo: Dataset) -> None:
    best, summary = select(small_demo, families=["popularity", "content"], trials=2)
    assert set(summary["model"]) == {"popularity", "content"}
    assert best.model == summary.iloc[0]["model"]
    assert best.best_score == summary["ndcg@10"].max()


def test_search_spaces_name_real_parameters_and_hold_the_defaults() -> None:
    from rekko.models import available_models

    for name, space in SEARCH_SPACES.items():
        if name in available_models():
            defaults = create_model(name).params.model_dump()
            assert set(space) <= set(defaults), name
            for parameter, dim in space.items():
                if dim.kind != "choice":
                    assert dim.low <= defaults[parameter] <= dim.high, (name, parameter)
                else:
                    assert defaults[parameter] in dim.choices, (name, parameter)


@pytest.mark.parametrize("metric", ["rmse", "ndgc@10", "ndcg@0", "ndcg@x"])
def test_a_metric_tune_cannot_rank_by_is_a_clear_error(metric: str, small_demo: Dataset) -> None:
    with pytest.raises(ModelError, match="--metric must be one of"):
        tune("popularity", small_demo, trials=1, metric=metric)


def test_bad_search_space_is_a_clear_error(small_demo: Dataset) -> None:
    with pytest.raises(ModelError, match="unknown parameters"):
        tune("popularity", small_demo, trials=1, space={"nope": Dimension("int", 1, 2)})
    with pytest.raises(ModelError, match="no search space"):
        tune("random", small_demo, trials=1)
