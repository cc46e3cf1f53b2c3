"""The seam between irisctl's use cases and where the stack runs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import IrisctlError

if TYPE_CHECKING:
    from ..portforward import Forward
    from ..settings import Config

# The contract's service names (DESIGN.md).
SERVICES = ("mlflow", "trainer", "model-api", "monitor", "prometheus")


@dataclass(frozen=True)
class ServiceState:
    """One service as the target sees it."""

    name: str
    state: str  # running, stopped, starting, backoff, fatal, exited, absent
    url: str | None  # the base URL (scheme, host, port) that scripts append API paths to
    uptime_s: float | None = None
    pid: int | None = None
    detail: str = ""
    page: str | None = None  # the page a person opens there; None: the base URL is that page


@dataclass(frozen=True)
class TrainOutcome:
    """How one training job ended: its exit code and the trainer's summary record."""

    exit_code: int
    summary: dict[str, object] | None
    error: str | None


@dataclass
class Check:
    """One preflight check of ``doctor``."""

    name: str
    level: str  # ok, warn, fail
    detail: str
    fix: str = ""


Progress = Callable[[str, str], None]  # (step, state) → shows it to the user


@dataclass
class TrainerLog:
    """What a training's JSON log lines said: its summary record and its failure, if any."""

    summary: dict[str, Any] | None = None
    error: str | None = None

    def read(self, line: str) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            return
        if not isinstance(record, dict):
            return
        if record.get("event") == "training.summary":
            self.summary = record
        elif record.get("event") == "training.failed":
            self.error = str(record.get("error", record.get("msg")))


def training_busy(who: str = "") -> IrisctlError:
    """The refusal of a second training while one runs (``who``: its pid or Job)."""
    return IrisctlError(
        f"a training is already running{f' ({who})' if who else ''}",
        "follow it with `irisctl logs trainer -f`, or wait for it to finish",
    )


def port_key(service: str) -> str:
    """The settings' port name of a service (``model-api`` is ``api_port``)."""
    return "api" if service == "model-api" else service


def service_settings(config: Config, tracking_uri: str) -> dict[str, str]:
    """The environment every service reads, in every target (local processes, ConfigMap)."""
    return {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "IRIS_ACCURACY_THRESHOLD": str(config["accuracy_threshold"]),
        "IRIS_STALE_AFTER_SECONDS": str(config["stale_after_hours"] * 3600),
        # How often the API and the monitor read the registry.
        "IRIS_POLL_SECONDS": str(config["poll_seconds"]),
        # The API's input-drift window (api/drift.py).
        "IRIS_DRIFT_WINDOW_ROWS": str(config["drift_window_rows"]),
        "IRIS_DRIFT_WINDOW_SECONDS": str(config["drift_window_seconds"]),
        "IRIS_DRIFT_MIN_ROWS": str(config["drift_min_rows"]),
        # The API's feedback (api/feedback.py): how long a prediction's id may be labelled, and
        # the labels in the window IrisLiveAccuracyLow waits for (the API exports it as a series).
        "IRIS_FEEDBACK_MAX_AGE_SECONDS": str(config["feedback_max_age_days"] * 86400),
        "IRIS_LIVE_ACCURACY_MIN_LABELS": str(config["live_accuracy_min_labels"]),
        # Bounded MLflow calls: the client's defaults wait ~4 minutes on a dead server.
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
        "PYTHONUNBUFFERED": "1",
        **telemetry_settings(config),
        **(
            {}
            if config["promotion_tolerance"] is None
            else {"IRIS_PROMOTION_TOLERANCE": str(config["promotion_tolerance"])}
        ),
    }


def telemetry_settings(config: Config) -> dict[str, str]:
    """MLflow's usage telemetry: off unless ``mlflow_telemetry`` opts in (README, "Privacy")."""
    off = "false" if config["mlflow_telemetry"] else "true"
    return {"MLFLOW_DISABLE_TELEMETRY": off, "DO_NOT_TRACK": off}


def seed_settings(config: Config) -> dict[str, str]:
    """``IRIS_SEED`` for the trainer when a fixed seed is configured."""
    seed = config["train_seed"]
    return {} if seed is None else {"IRIS_SEED": str(seed)}


class Target(Protocol):
    """Where the stack runs: deploy, run training, reach services, report, tear down."""

    name: str

    def up(self, progress: Progress) -> None:
        """Bring every service up (idempotent) and wait until each is healthy."""

    def is_up(self) -> bool:
        """True when this target's stack is running."""

    def endpoint(self, service: str) -> str:
        """The base URL of a service as reachable from this machine."""

    def services(self) -> list[ServiceState]:
        """Every service and its state."""

    def train(self, on_line: Callable[[str], None], attach: bool = False) -> TrainOutcome:
        """Run one training job now, streaming its log lines.

        If one is already running: refuse, or with ``attach`` follow it to its end instead.
        """

    def cancel_training(self) -> list[str]:
        """Stop every running training job (``irisctl train --cancel``); what was stopped."""

    def logs(self, service: str, follow: bool, tail: int | None) -> Iterator[str]:
        """A service's log lines (``trainer``: the last training run)."""

    def checks(self) -> list[Check]:
        """``doctor``'s checks that only this target needs (beside the common ones)."""

    def render(self) -> dict[str, str]:
        """The configuration ``up`` would apply, by file name."""

    def purge_scope(self) -> str:
        """What ``down --purge`` deletes, for its confirmation."""

    def down(
        self,
        purge: bool,
        dry_run: bool = False,
        cluster: bool = False,
        progress: Progress | None = None,
    ) -> list[str]:
        """Stop everything this target started; with ``purge`` delete its data. What was done.

        ``dry_run``: what would be done, changing nothing. ``cluster``: also stop the cluster.
        ``progress``: told about long waits (a namespace terminating).
        """

    def secrets(self) -> dict[str, str]:
        """The credentials this target generated (only ``status --show-secrets`` shows them)."""

    def forward(self, on_error: Callable[[str], None]) -> list[Forward]:
        """Forward local ports to the services (``irisctl port-forward``); running forwards."""
