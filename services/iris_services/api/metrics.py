"""The model API's own Prometheus metrics: requests, latency, the served version, load failures.

The input-drift metrics (``iris_api_predictions``, PSI, out-of-range counts) belong to the drift
monitor and are defined in ``drift.py``; both write to the registry made here.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .model_holder import Loaded


class Metrics:
    """The API's Prometheus metrics, in a registry of their own (one per app).

    With several worker processes (``PROMETHEUS_MULTIPROC_DIR`` set by ``__main__``) each worker
    writes its samples to that directory and ``/metrics`` adds them up, so a scrape sees the
    whole API whichever worker answers it.
    """

    def __init__(self, accuracy_threshold: float = 0.9, live_min_labels: int = 50) -> None:
        disable_created_metrics()  # no *_created series: they only add noise here
        self.registry = CollectorRegistry()
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.MultiProcessCollector(self.registry)
        r = None if self.multiprocess else self.registry
        self.requests = Counter(
            "iris_api_requests", "Prediction requests by HTTP status", ["status"], registry=r
        )
        self.duration = Histogram(
            "iris_api_request_duration_seconds",
            "Prediction request latency",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.version = Gauge(
            "iris_api_model_version_info",
            "1 for the model version being served",
            ["version"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.load_failures = Counter(
            "iris_api_model_load_failures",
            "Champions that failed to load or smoke-test",
            registry=r,
        )
        self.feedback = Counter(
            "iris_api_feedback",
            "Labels accepted by POST /feedback, by the version that made the prediction and "
            "whether it was right",
            ["version", "outcome"],
            registry=r,
        )
        # What IrisLiveAccuracyLow compares the live accuracy with, and the labels it waits for.
        live_threshold = Gauge(
            "iris_api_live_accuracy_threshold",
            "Live accuracy (on labelled predictions) below which IrisLiveAccuracyLow fires",
            registry=r,
            multiprocess_mode="livemax",
        )
        live_min = Gauge(
            "iris_api_live_accuracy_min_labels",
            "Labels of a version in the alert's window before IrisLiveAccuracyLow may fire",
            registry=r,
            multiprocess_mode="livemax",
        )
        live_threshold.set(accuracy_threshold)
        live_min.set(live_min_labels)
        self.model_loaded = Gauge(
            "iris_api_model_loaded",
            "1 when a model is loaded and served",
            registry=r,
            multiprocess_mode="livemin",
        )

    def every_worker_loaded(self) -> bool:
        """Whether every live worker serves a model: the gauge's minimum over the workers.

        One worker answers `/readyz`; without this a pod (or `irisctl up`) would be told
        "ready" while a sibling worker still answers 503.
        """
        if not self.multiprocess:
            return True
        return self.registry.get_sample_value("iris_api_model_loaded") == 1.0

    def swapped(self, old: Loaded | None, new: Loaded) -> None:
        if old is not None:
            if self.multiprocess:  # samples live in files: a label cannot be removed
                self.version.labels(old.champion.version).set(0)
            else:
                self.version.remove(old.champion.version)
        self.version.labels(new.champion.version).set(1)
        self.model_loaded.set(1)
        # Both outcomes exist at 0 from the start: increase() misses a series' first count, and
        # IrisLiveAccuracyLow must see a version whose every label is wrong.
        for outcome in OUTCOMES:
            self.feedback.labels(new.champion.version, outcome)


OUTCOMES = ("correct", "wrong")


class PredictMetricsMiddleware:
    """Count and time /predict requests by final status, including 413/422 answered early."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/predict":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.requests.labels(str(status)).inc()
            self.metrics.duration.observe(time.perf_counter() - start)
