"""Offline evaluation: metrics and the runner that compares models on one split."""

from rekko.evaluation.evaluate import Protocol, evaluate, evaluate_recommendations

__all__ = ["Protocol", "evaluate", "evaluate_recommendations"]
