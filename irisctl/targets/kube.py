"""The Kubernetes targets (``minikube`` and ``kubernetes``): the manifests ``up`` would apply.

In this version the manifests are rendered (``irisctl render --target minikube``) and validated
offline against the Kubernetes OpenAPI schemas; applying them, building images inside
minikube's Docker, port-forwarding and the other verbs are not implemented yet, and say so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .. import render
from ..errors import IrisctlError
from ..settings import Config
from .base import Progress, ServiceState, TrainOutcome, seed_settings, service_settings

NAMESPACE = "iris-mlops"
SECRET_NAME = "iris-credentials"
BUCKET = "mlflow"
# Third-party images, pinned by version tag (override with IRISCTL_*_IMAGE to pin by digest).
IMAGES = {
    "minio": "quay.io/minio/minio:RELEASE.2025-04-22T22-12-26Z",
    "prometheus": "quay.io/prometheus/prometheus:v2.53.4",
    "alertmanager": "quay.io/prometheus/alertmanager:v0.28.1",
}
# Requests and limits, sized from what the local target measured (MLflow lean: ~0.5 GiB).
RESOURCES = {
    "minio": ("100m", "256Mi", "1", "1Gi"),
    "mlflow": ("200m", "512Mi", "1", "1536Mi"),
    "api": ("200m", "512Mi", "2", "1Gi"),
    "monitor": ("50m", "256Mi", "500m", "512Mi"),
    "trainer": ("200m", "512Mi", "1", "1Gi"),
    "prometheus": ("100m", "256Mi", "1", "1Gi"),
    "alertmanager": ("20m", "64Mi", "200m", "256Mi"),
    "job": ("50m", "128Mi", "500m", "256Mi"),
}
MANIFESTS = (
    "00-namespace",
    "10-config",
    "20-minio",
    "30-mlflow",
    "40-model-api",
    "50-monitor",
    "60-prometheus",
    "70-trainer",
)


def services_image_tag() -> str:
    """A tag that changes with the image's content: a hash of its whole build context."""
    digest = hashlib.sha256()
    for name, path in build_context().items():
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def build_context() -> dict[str, Path]:
    """The services image's build context: path in the context → file, in a stable order."""
    docker = render.templates_dir() / "docker"
    import iris_services

    package = Path(iris_services.__file__).parent
    context = {"Dockerfile": docker / "Dockerfile", "requirements.txt": docker / "requirements.txt"}
    for source in sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts):
        context[f"iris_services/{source.relative_to(package)}"] = source
    return context


class KubeTarget:
    """minikube (images built in its Docker) or any cluster (images pushed to ``--registry``)."""

    def __init__(self, config: Config, name: str) -> None:
        self.config = config
        self.name = name

    def images(self) -> dict[str, str]:
        registry = self.config["registry"].rstrip("/")
        services = f"irisctl-services:{services_image_tag()}"
        if self.name == "kubernetes" and registry:
            services = f"{registry}/{services}"
        return {"services": services, **IMAGES}

    def service_env(self) -> dict[str, str]:
        """The settings ConfigMap: the same names the local target's processes get."""
        return {
            **service_settings(self.config, "http://mlflow-service:5000"),
            **seed_settings(self.config),
        }

    def allowed_hosts(self) -> list[str]:
        ns = self.config["namespace"]
        names = [
            "mlflow-service",
            f"mlflow-service.{ns}",
            f"mlflow-service.{ns}.svc",
            f"mlflow-service.{ns}.svc.cluster.local",
            "localhost",
            "127.0.0.1",
        ]
        return [h for n in names for h in (n, f"{n}:5000")]

    def render(self) -> dict[str, str]:
        """Every manifest ``up`` applies, one component per file (no Secret values)."""
        c = self.config
        context: dict[str, Any] = {
            "namespace": c["namespace"],
            "secret_name": SECRET_NAME,
            "bucket": BUCKET,
            "images": self.images(),
            "storage_class": "standard" if self.name == "minikube" else "",
            "storage": {"minio": "5Gi", "mlflow": "1Gi", "prometheus": "2Gi"},
            "prometheus_retention_size": "1536MB",
            "res": {
                k: dict(
                    zip(
                        ("cpu_request", "memory_request", "cpu_limit", "memory_limit"),
                        v,
                        strict=True,
                    )
                )
                for k, v in RESOURCES.items()
            },
            "service_env": self.service_env(),
            "allowed_hosts": self.allowed_hosts(),
            "api_workers": 2,
            "schedule": c["train_schedule"],
            "prometheus_yml": render.render(
                "k8s/prometheus.yml.j2", scrape_interval=c["scrape_interval"]
            ),
            "rules_yml": render.cap_for(render.read("prometheus/alerts.yml"), c["alert_for_max"]),
            "alertmanager_yml": render.render(
                "local/alertmanager.yml.j2", webhook_url=c["alert_webhook_url"]
            ),
        }
        return {
            f"{name}.yaml": render.render(f"k8s/{name}.yaml.j2", **context) for name in MANIFESTS
        }

    def _not_yet(self, verb: str) -> IrisctlError:
        return IrisctlError(
            f"`irisctl {verb}` on the {self.name} target is not available in this version",
            f"`irisctl render --target {self.name}` prints the manifests it would apply; "
            "use --target local to run the stack here",
        )

    def is_up(self) -> bool:
        return False

    def up(self, progress: Progress) -> None:
        raise self._not_yet("up")

    def endpoint(self, service: str) -> str:
        raise self._not_yet("status")

    def services(self) -> list[ServiceState]:
        raise self._not_yet("status")

    def train(self, on_line: Callable[[str], None], attach: bool = False) -> TrainOutcome:
        raise self._not_yet("train")

    def logs(self, service: str, follow: bool, tail: int | None) -> Iterator[str]:
        raise self._not_yet("logs")

    def down(self, purge: bool) -> list[str]:
        raise self._not_yet("down")
