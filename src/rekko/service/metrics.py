"""Prometheus metrics of one app: requests, latency, events, the model version.

Each app gets its own :class:`~prometheus_client.CollectorRegistry` (nothing global), so tests
can build many apps. With several worker processes each worker reports its own counters; put
the workers behind a scraper that sums them, or run one worker per container.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServiceMetrics:
    """The counters and gauges the service updates."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "rekko_http_requests",
            "HTTP requests by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "rekko_http_request_duration_seconds",
            "Time from request to response, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.events_stored = Counter(
            "rekko_events_stored", "Feedback events stored.", registry=self.registry
        )
        self.events_duplicate = Counter(
            "rekko_events_duplicate",
            "Feedback events not stored again (replayed event ids).",
            registry=self.registry,
        )
        self.events_applied = Counter(
            "rekko_events_applied",
            "Stored events folded into a served model, by model version.",
            ["version"],
            registry=self.registry,
        )
        self.recommendations = Counter(
            "rekko_recommendations",
            "Recommendation lists served, by kind (user, anonymous, similar), model version "
            "and fallback (none when the model answered itself).",
            ["kind", "version", "fallback"],
            registry=self.registry,
        )
        self.model_version = Gauge(
            "rekko_model_active",
            "1 for the model version this worker serves as active, 0 for others it has served.",
            ["version"],
            registry=self.registry,
        )
        self.model_swaps = Counter(
            "rekko_model_swaps", "Times the active model was replaced.", registry=self.registry
        )
        self.training_jobs = Counter(
            "rekko_training_jobs",
            "Training jobs finished, by status and whether the version was activated.",
            ["status", "activated"],
            registry=self.registry,
        )
        self.impressions_logged = Counter(
            "rekko_impressions_logged",
            "Impressions written to the database.",
            registry=self.registry,
        )

        # Labelled children by label values: a dictionary look-up per request instead of the
        # client library's label resolution (the number of values is bounded, see below).
        self._request_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._list_children: dict[tuple[str, str, str], Any] = {}

    def observe_request(self, route: str, method: str, status: str, seconds: float) -> None:
        """Count one request and its latency under its route template."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (self.requests.labels(*key), self.latency.labels(route))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def served_list(self, kind: str, version: str, fallback: str) -> None:
        """Count one recommendation list."""
        key = (kind, version, fallback)
        child = self._list_children.get(key)
        if child is None:
            child = self._list_children[key] = self.recommendations.labels(*key)
        child.inc()

    def set_active(self, version: str, previous: str | None) -> None:
        if previous is not None and previous != version:
            self.model_version.labels(previous).set(0)
            self.model_swaps.inc()
        self.model_version.labels(version).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts requests and times them by route template (``/users/{user_id}/...``), so that
    the number of label values stays bounded whatever ids clients send."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(
                template, scope["method"], str(status), time.perf_counter() - started
            )
