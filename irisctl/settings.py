"""irisctl's configuration: flag > IRISCTL_* env > config file > default, each with its source."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BadInput

CONFIG_FILE = "config.toml"
_DURATION = re.compile(r"[0-9]+(ms|s|m|h)")
# C0 controls, DEL and C1: a newline in train_schedule would add lines to supervisord.conf, one in
# registry to a manifest's YAML; no setting has a use for any of them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Setting:
    """A value and where it came from."""

    value: Any
    source: str


# name → (default, parser). The env variable is IRISCTL_<NAME upper>.
DEFAULTS: dict[str, tuple[Any, type]] = {
    "target": ("auto", str),
    "mlflow_port": (5000, int),
    "api_port": (8080, int),
    "monitor_port": (8001, int),
    "prometheus_port": (9090, int),
    "alertmanager_port": (9093, int),
    "accuracy_threshold": (0.9, float),
    "train_schedule": ("0 3 * * *", str),
    "stale_after_hours": (36.0, float),
    "poll_seconds": (5.0, float),
    "api_workers": (min(os.cpu_count() or 1, 4), int),  # model API processes
    "scrape_interval": ("15s", str),
    "train_seed": (None, int),  # None: a new random seed per run (always logged)
    # How much worse than the champion (on the same held-out rows) a new model may score and
    # still replace it; None: the trainer's default, the noise of a paired test (README).
    "promotion_tolerance": (None, float),
    "mlflow_telemetry": (False, bool),  # MLflow's usage telemetry: off unless opted in
    "alert_webhook_url": ("", str),  # Alertmanager's receiver; empty: notify nobody
    # Cap every rule's `for:` (e.g. "5s") in the rendered rules: for demos and tests only.
    "alert_for_max": ("", str),
    # The model API's input-drift window and the rows IrisInputDrift waits for (api/drift.py).
    "drift_window_rows": (10_000, int),
    "drift_window_seconds": (3600.0, float),
    "drift_min_rows": (500, int),
    # Feedback (README, "Closing the loop"): how long a prediction's id can be labelled; the
    # window of IrisLiveAccuracyLow, `status` and `top`; the labels in it the alert waits for.
    "feedback_max_age_days": (7.0, float),
    "live_accuracy_window": ("1h", str),
    "live_accuracy_min_labels": (50, int),
    # Kubernetes targets
    "namespace": ("iris-mlops", str),
    "registry": ("", str),  # where `--target kubernetes` pushes and pulls the services image
    "context": ("", str),  # `--target kubernetes`: the kubeconfig context, always named
    "kubeconfig": ("", str),  # empty: KUBECONFIG, else ~/.kube/config
    "minikube_profile": ("minikube", str),
    "minikube_cpus": (2, int),
    "minikube_memory_mb": (4096, int),
    "minikube_addons": ("", str),  # comma-separated, e.g. "metrics-server"; the stack needs none
    # The model API's pods: a fixed count, or "MIN..MAX" for a HorizontalPodAutoscaler on CPU
    # (needs metrics-server); a PodDisruptionBudget keeps one serving once there are two.
    "api_replicas": (1, int),
    "api_autoscale": ("", str),
    # MLflow's backend store on Kubernetes (kept in the Secret); empty: sqlite on a PVC.
    "backend_store_uri": ("", str),
    "rollout_timeout": (600.0, float),  # seconds `up` waits for every workload to be ready
    "minio_console": (False, bool),  # Kubernetes: MinIO's console port on its Service
    # `up` into an existing namespace irisctl did not create (never relabelled, never purged).
    "adopt": (False, bool),
}


def default_home() -> Path:
    """``IRISCTL_HOME``, else the platform's user data dir."""
    env = os.environ.get("IRISCTL_HOME")
    if env:
        return Path(env).expanduser().absolute()
    from platformdirs import user_data_dir

    return Path(user_data_dir("irisctl", appauthor=False))


@dataclass(frozen=True)
class Config:
    """Resolved settings for one invocation."""

    home: Path
    values: dict[str, Setting] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.values[name].value

    def source(self, name: str) -> str:
        return self.values[name].source

    @property
    def ports(self) -> dict[str, int]:
        return {
            "mlflow": self["mlflow_port"],
            "api": self["api_port"],
            "monitor": self["monitor_port"],
            "prometheus": self["prometheus_port"],
            "alertmanager": self["alertmanager_port"],
        }


def _parse(name: str, raw: Any, parser: type, source: str) -> Any:
    if raw is None:
        return None
    if isinstance(raw, str) and (hit := _CONTROL.search(raw)):
        # The position, not the value: a webhook URL or a backend URI is a credential.
        raise BadInput(
            f"{name} from {source} contains a control character (newline, tab, escape…): "
            f"{hit.group()!r} at position {hit.start() + 1}",
            "give the value on one line, without control characters",
        )
    try:
        if parser is bool and isinstance(raw, str):
            if raw.strip().lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError(raw)
            raw = raw.strip().lower() in ("1", "true", "yes", "on")
        value = parser(raw)
    except (TypeError, ValueError):
        raise BadInput(f"{name} from {source} is not a valid {parser.__name__}: {raw!r}") from None
    if name == "api_workers" and not 1 <= value <= 64:
        raise BadInput(f"api_workers from {source} must be between 1 and 64, not {value}")
    if name == "api_replicas" and not 1 <= value <= MAX_API_REPLICAS:
        raise BadInput(
            f"api_replicas from {source} must be between 1 and {MAX_API_REPLICAS}, not {value}"
        )
    if name == "api_autoscale" and value:
        autoscale_range(value, source)
    if name.endswith("_port") and not 1 <= value <= 65535:
        raise BadInput(f"{name} from {source} must be a port number (1-65535), not {value}")
    if name == "promotion_tolerance" and not 0.0 <= value <= 1.0:
        raise BadInput(f"promotion_tolerance from {source} must be between 0 and 1, not {value}")
    if name == "accuracy_threshold" and not 0.0 <= value <= 1.0:
        raise BadInput(f"accuracy_threshold from {source} must be between 0 and 1, not {value}")
    if (
        name in ("scrape_interval", "alert_for_max", "live_accuracy_window")
        and value
        and not _DURATION.fullmatch(value)
    ):
        raise BadInput(f"{name} from {source} must be a duration like 15s or 1m, not {value!r}")
    if name == "target":
        value = value.lower()  # `--target Kubernetes` names the same target as `kubernetes`
    if name == "namespace" and not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", value):
        raise BadInput(f"namespace from {source} is not a valid Kubernetes name: {value!r}")
    if name == "backend_store_uri" and value and "://" not in value:
        raise BadInput(f"backend_store_uri from {source} must be a URI like postgresql://…")
    if name == "live_accuracy_window" and (not value or re.fullmatch(r"0+(ms|s|m|h)", value)):
        # Prometheus refuses a zero range ("duration must be greater than 0"): no rules at all.
        raise BadInput(f"live_accuracy_window from {source} must be a duration like 1h or 10m")
    if (
        name.startswith("drift_") or name in ("feedback_max_age_days", "live_accuracy_min_labels")
    ) and value <= 0:
        raise BadInput(f"{name} from {source} must be positive, not {value}")
    if name in ("minikube_cpus", "minikube_memory_mb", "rollout_timeout") and value <= 0:
        raise BadInput(f"{name} from {source} must be positive, not {value}")
    if name == "alert_webhook_url" and value and not value.startswith(("http://", "https://")):
        raise BadInput(f"alert_webhook_url from {source} must be an http(s) URL")
    return value


MAX_API_REPLICAS = 20


def autoscale_range(value: str, source: str = "api_autoscale") -> tuple[int, int] | None:
    """``"MIN..MAX"`` → (MIN, MAX); empty → None (no autoscaler). A clear error otherwise."""
    if not value:
        return None
    hit = re.fullmatch(r"\s*(\d+)\s*\.\.\s*(\d+)\s*", value)
    low, high = (int(hit.group(1)), int(hit.group(2))) if hit else (0, 0)
    if not hit or not 1 <= low <= high <= MAX_API_REPLICAS:
        raise BadInput(
            f"api_autoscale from {source} must be MIN..MAX with 1 <= MIN <= MAX <= "
            f"{MAX_API_REPLICAS}, like 1..4, not {value!r}",
            "or leave it empty for a fixed api_replicas",
        )
    return low, high


RECORDED = ("mlflow_port", "api_port", "monitor_port", "prometheus_port", "alertmanager_port")
# Where a Kubernetes stack lives: later commands act on the cluster `up` used.
RECORDED_PLACE = ("context", "kubeconfig", "namespace", "minikube_profile", "registry")


def load(
    flags: dict[str, Any] | None = None,
    home: Path | None = None,
    recorded: dict[str, Any] | None = None,
) -> Config:
    """Resolve every setting: flag > env > the running stack's (ports) > config file > default.

    ``recorded`` is the state file of a running stack: its ports win over the config file and
    the defaults, so ``irisctl predict`` reaches the stack ``up --api-port 9000`` started.
    """
    running = {}
    if recorded and recorded.get("up"):
        ports = recorded.get("ports", {})
        running = {f"{k}_port": v for k, v in ports.items() if f"{k}_port" in RECORDED}
    if recorded:  # also after `down`: `down --purge` and `up` again act on the same cluster
        place = recorded.get("place", {})
        running.update({k: v for k, v in place.items() if k in RECORDED_PLACE and v})
    home = home or default_home()
    file_values: dict[str, Any] = {}
    path = home / CONFIG_FILE
    if path.exists():
        try:
            file_values = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise BadInput(f"{path} is not valid TOML: {exc}") from None
        unknown = set(file_values) - set(DEFAULTS)
        if unknown:
            raise BadInput(
                f"{path}: unknown settings {sorted(unknown)}",
                f"known settings: {', '.join(DEFAULTS)}",
            )
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    values = {}
    for name, (default, parser) in DEFAULTS.items():
        env = f"IRISCTL_{name.upper()}"
        if name in flags:
            raw, source = flags[name], "flag"
        elif os.environ.get(env):
            raw, source = os.environ[env], f"env {env}"
        elif name in running:
            raw, source = running[name], "the running stack (state file)"
        elif name in file_values:
            raw, source = file_values[name], f"config file {path}"
        else:
            raw, source = default, "default"
        values[name] = Setting(_parse(name, raw, parser, source), source)
    return Config(home=home, values=values)
