"""Progress reports: the library tells a listener what it is doing, and nobody else."""

from __future__ import annotations

import threading

from rekko import progress
from rekko.data.dataset import Dataset
from rekko.evaluation import evaluate
from rekko.models import create_model
from rekko.tuning import tune


def test_evaluate_and_tune_report_their_steps(small_demo: Dataset) -> None:
    heard: list[tuple[str, int, int]] = []
    with progress.listening(lambda task, done, total: heard.append((task, done, total))):
        evaluate([create_model("popularity"), create_model("random")], small_demo)
        tune("popularity", small_demo, trials=2, seed=1)
    assert heard == [
        ("models evaluated", 0, 2),
        ("models evaluated", 1, 2),
        ("models evaluated", 2, 2),
        ("popularity trials", 1, 2),
        ("popularity trials", 2, 2),
    ]


def test_nothing_is_reported_outside_the_block_or_to_other_threads(small_demo: Dataset) -> None:
    heard: list[tuple[str, int, int]] = []
    other = threading.Thread(target=lambda: tune("popularity", small_demo, trials=1))
    with progress.listening(lambda *step: heard.append(step)):
        other.start()
        other.join()
    tune("popularity", small_demo, trials=1)
    assert heard == []


def test_neural_training_reports_epochs(small_demo: Dataset) -> None:
    import pytest

    pytest.importorskip("tensorflow")
    heard: list[tuple[str, int, int]] = []
    with progress.listening(lambda *step: heard.append(step)):
        create_model("two-tower", max_epochs=2).fit(small_demo)
        create_model("neural-mf", max_epochs=2).fit(small_demo)
    assert heard[0] == ("two-tower epochs", 1, 2)
    assert ("neural-mf epochs", 1, 2) in heard
    assert {task for task, _, _ in heard} == {"two-tower epochs", "neural-mf epochs"}
