"""Where the local stack lives: its directories under ``IRISCTL_HOME``, the Prometheus and
Alertmanager binaries found on PATH, and each service's address on 127.0.0.1."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from iris_services.common.signing import KEY_FILE_NAME

from ...errors import BadInput
from ...settings import Config
from ..base import port_key

# What `up` waits on and `status` probes, per service.
HEALTH_PATHS = {
    "mlflow": "/health",
    "model-api": "/healthz",
    "monitor": "/metrics",
    "prometheus": "/-/ready",
    "alertmanager": "/-/ready",
}


@dataclass(frozen=True)
class Layout:
    """The stack's places on this machine."""

    config: Config
    home: Path
    run_dir: Path  # rendered files, supervisord's socket, the graph cache, the training lock
    logs_dir: Path
    data_dir: Path  # MLflow's store, Prometheus' and Alertmanager's data, the feedback spool
    signing_key_file: Path  # what the trainer signs versions with; purged with the data
    prometheus_bin: str | None
    alertmanager_bin: str | None

    @classmethod
    def of(cls, config: Config) -> Layout:
        home = config.home
        data_dir = home / "data"
        return cls(
            config=config,
            home=home,
            run_dir=home / "run",
            logs_dir=home / "logs",
            data_dir=data_dir,
            signing_key_file=data_dir / KEY_FILE_NAME,
            prometheus_bin=shutil.which("prometheus"),
            # Debian names the binary prometheus-alertmanager; upstream's is alertmanager.
            alertmanager_bin=shutil.which("prometheus-alertmanager")
            or shutil.which("alertmanager"),
        )

    @property
    def feedback_spool_dir(self) -> Path:
        """Where the model API's workers share the labels not yet stored (purged with the data)."""
        return self.data_dir / "feedback-spool"

    @property
    def alerting(self) -> bool:
        """Alertmanager runs only beside a Prometheus to send it alerts."""
        return self.prometheus_bin is not None and self.alertmanager_bin is not None

    def endpoint(self, service: str) -> str:
        """The service's base URL on 127.0.0.1."""
        key = port_key(service)
        if key not in self.config.ports:
            raise BadInput(f"{service} has no HTTP endpoint")
        return f"http://127.0.0.1:{self.config.ports[key]}"
