"""Registry state → Prometheus gauges. Never crashes when MLflow is away."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Gauge, disable_created_metrics

from ..common.alias import Champion
from ..common.settings import MonitorSettings

log = logging.getLogger("iris.monitor")


@dataclass(frozen=True)
class LastRun:
    """The newest completed training run."""

    finished_at: float  # unix seconds
    success: bool
    accuracy: float | None


@dataclass(frozen=True)
class Snapshot:
    """What the monitor read from the registry in one pass."""

    champion: Champion | None
    last_run: LastRun | None


class Source(Protocol):
    """Where snapshots come from (MLflow in production)."""

    def read(self) -> Snapshot: ...


class Exporter:
    """Holds the gauges and updates them from one snapshot at a time."""

    def __init__(self, settings: MonitorSettings, source: Source) -> None:
        self.settings = settings
        self.source = source
        disable_created_metrics()  # no *_created series: they only add noise here
        self.registry = CollectorRegistry()
        model = ["model"]
        r = self.registry

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, model, registry=r)

        self.accuracy = gauge(
            "iris_model_accuracy", "Held-out accuracy of the champion, as last measured"
        )
        self.registered = gauge(
            "iris_model_last_registered_timestamp_seconds", "When the champion was registered"
        )
        self.validated = gauge(
            "iris_model_last_validated_timestamp_seconds",
            "When the champion last reached the threshold on the current held-out rows "
            "(promoted or re-validated by a training run)",
        )
        self.version = gauge("iris_model_version", "The champion's version number")
        self.last_run_ts = gauge(
            "iris_training_last_run_timestamp_seconds", "When the newest training run ended"
        )
        self.last_run_ok = gauge(
            "iris_training_last_run_success", "1 if the newest training run completed, else 0"
        )
        self.last_run_accuracy = gauge(
            "iris_training_last_run_accuracy", "Held-out accuracy of the newest training run"
        )
        self.threshold = gauge("iris_model_accuracy_threshold", "The promotion threshold")
        self.stale_after = gauge(
            "iris_model_stale_threshold_seconds", "Age after which the champion is stale"
        )
        self.mlflow_up = Gauge(
            "iris_monitor_mlflow_up", "1 if the last registry read succeeded", registry=r
        )
        self.last_success = Gauge(
            "iris_monitor_last_success_timestamp_seconds",
            "When the registry was last read",
            registry=r,
        )
        name = settings.model_name
        self.threshold.labels(name).set(settings.accuracy_threshold)
        self.stale_after.labels(name).set(settings.stale_after_s)

    def update(self) -> bool:
        """Read the registry once and update the gauges; False (and one log line) on failure."""
        try:
            snap = self.source.read()
        except Exception as exc:
            self.mlflow_up.set(0)
            log.warning(
                "could not read the registry: %s", exc, extra={"event": "monitor.read_failed"}
            )
            return False
        name = self.settings.model_name
        if snap.champion is None:
            for g in (self.accuracy, self.registered, self.validated, self.version):
                _drop(g, name)
        else:
            champ = snap.champion
            # The newest measurement: a re-scored champion's, else its score at registration.
            accuracy = (
                champ.scored_accuracy if champ.scored_accuracy is not None else champ.accuracy
            )
            if accuracy is not None:
                self.accuracy.labels(name).set(accuracy)
            self.registered.labels(name).set(champ.registered_at)
            self.validated.labels(name).set(max(champ.registered_at, champ.validated_at or 0.0))
            self.version.labels(name).set(float(snap.champion.version))
        if snap.last_run is not None:
            self.last_run_ts.labels(name).set(snap.last_run.finished_at)
            self.last_run_ok.labels(name).set(1 if snap.last_run.success else 0)
            if snap.last_run.accuracy is not None:
                self.last_run_accuracy.labels(name).set(snap.last_run.accuracy)
        self.mlflow_up.set(1)
        self.last_success.set(time.time())
        return True

    def run_forever(self, stop: threading.Event) -> None:
        """Update every ``poll_s`` seconds until ``stop`` is set."""
        while not stop.is_set():
            self.update()
            stop.wait(self.settings.poll_s)


def _drop(gauge: Gauge, label: str) -> None:
    with contextlib.suppress(KeyError):  # never set: nothing to drop
        gauge.remove(label)


class MlflowSource:
    """Reads the champion and the newest training run from MLflow."""

    def __init__(self, client: Any, settings: MonitorSettings) -> None:
        self.client = client
        self.settings = settings

    def read(self) -> Snapshot:
        from ..common.alias import champion_at

        s = self.settings
        champion = champion_at(s.tracking_uri, s.model_name, s.model_alias, s.mlflow_timeout_s)
        experiment = self.client.get_experiment_by_name(s.experiment_name)
        last_run = None
        if experiment is not None:
            runs = self.client.search_runs(
                [experiment.experiment_id],
                filter_string="tags.`iris.trainer` = '1'",
                order_by=["attributes.start_time DESC"],
                max_results=10,
            )
            for run in runs:
                if run.info.status in ("FINISHED", "FAILED", "KILLED"):
                    last_run = LastRun(
                        finished_at=(run.info.end_time or run.info.start_time) / 1000.0,
                        success=run.info.status == "FINISHED",
                        accuracy=run.data.metrics.get("accuracy"),
                    )
                    break
        return Snapshot(champion=champion, last_run=last_run)
