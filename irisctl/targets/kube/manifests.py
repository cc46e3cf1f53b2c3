"""What ``up`` applies: ``templates/k8s/`` rendered for one target, and the generated Secret."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from ... import images as images_mod
from ... import render as templates
from ...settings import Config, autoscale_range
from ..base import seed_settings, service_settings

NAMESPACE = "iris-mlops"
SECRET_NAME = "iris-credentials"
WEBHOOK_KEY = "alert-webhook-url"  # in the Secret, when alert_webhook_url is set
WEBHOOK_URL_FILE = "/var/run/iris-webhook/url"
BUCKET = "mlflow"
DEFAULT_BACKEND_URI = "sqlite:////data/mlflow.db"  # on the mlflow-data PVC
# Third-party images, pinned by version tag (override with IRISCTL_*_IMAGE to pin by digest).
IMAGES = {
    "minio": "quay.io/minio/minio:RELEASE.2025-04-22T22-12-26Z",
    "prometheus": "quay.io/prometheus/prometheus:v2.53.4",
    "alertmanager": "quay.io/prometheus/alertmanager:v0.28.1",
}
# Requests and limits, set from what bench/resources.py measured on the local target (the same
# service code; the README's "Requests and limits, measured"): each memory limit at least 1.5x
# the measured peak, each request near the steady use (a Job's: its peak). 2-core VM,
# 2026-12-06, MLflow 3.17.2.
RESOURCES = {
    "minio": ("100m", "256Mi", "1", "1Gi"),  # not measured: MinIO does not run locally
    "mlflow": ("200m", "576Mi", "1", "1536Mi"),  # steady 518 MiB, peak 520
    "api": ("200m", "384Mi", "2", "1536Mi"),  # 2 workers: steady 311 MiB, peak 329
    "monitor": ("50m", "192Mi", "500m", "512Mi"),  # steady 180 MiB, peak 181
    "trainer": ("200m", "640Mi", "1", "1280Mi"),  # peak 640 MiB, log_model's subprocess included
    # steady 54 MiB on an empty TSDB: the request leaves room for days of series
    "prometheus": ("100m", "256Mi", "1", "1Gi"),
    "alertmanager": ("20m", "64Mi", "200m", "256Mi"),  # steady 33 MiB
    "job": ("50m", "128Mi", "500m", "256Mi"),  # not measured: MinIO's `mc`
}
# The peaks behind RESOURCES (MiB: each process's own high-water mark, summed over the service's
# process tree), so a test holds every limit to 1.5x them; rerun bench/resources.py to renew.
MEASURED_PEAK_MIB = {
    "mlflow": 520,
    "api": 329,
    "monitor": 181,
    "trainer": 640,
    "prometheus": 54,
    "alertmanager": 33,
}
# What a node needs besides the stack's pods: kube-system (etcd, the API server, the controller
# manager, CoreDNS, kube-proxy) and the kubelet. An allowance, not measured here (no minikube
# runs on this machine): their requests are ~170 MiB, their usage is commonly 0.6-1 GiB.
NODE_OVERHEAD_MIB = 1024
# The model API's worker processes in a pod unless api_workers is set: RESOURCES["api"] is sized
# for them.
POD_API_WORKERS = 2


def memory_mib(quantity: str) -> int:
    """A memory quantity of RESOURCES (``"768Mi"``, ``"1Gi"``) in MiB."""
    if quantity.endswith("Gi"):
        return int(quantity.removesuffix("Gi")) * 1024
    return int(quantity.removesuffix("Mi"))


def stack_memory_mib(api_pods: int = 1) -> int:
    """The memory requests of every pod the stack runs at once (the nightly training included,
    the one-off bucket Job not; ``api_pods`` model-API pods), plus the node's own: what
    minikube's memory must cover."""
    requests = (
        memory_mib(request) for key, (_, request, _, _) in RESOURCES.items() if key != "job"
    )
    more_api = (api_pods - 1) * memory_mib(RESOURCES["api"][1])
    return sum(requests) + more_api + NODE_OVERHEAD_MIB


MANIFESTS = (
    "00-namespace",
    "10-config",
    "20-minio",
    "30-mlflow",
    "40-model-api",
    "50-monitor",
    "60-prometheus",
    "70-trainer",
    "80-network-policies",
)
LABELS = {"app.kubernetes.io/part-of": "irisctl", "app.kubernetes.io/managed-by": "irisctl"}


def bucket_policy(bucket: str) -> dict[str, Any]:
    """MLflow's MinIO user may list, read, write and delete in its bucket, nothing else (the
    proxied artifact store's calls; no ListAllMyBuckets, no admin, no other bucket)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "s3:GetBucketLocation",
                    "s3:ListBucket",
                    "s3:ListBucketMultipartUploads",
                ],
                "Resource": [f"arn:aws:s3:::{bucket}"],
            },
            {
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts",
                ],
                "Resource": [f"arn:aws:s3:::{bucket}/*"],
            },
        ],
    }


def images(config: Config, target: str) -> dict[str, str]:
    """The image of each workload: ours by service (``images.SERVICE_IMAGES``), the others'
    pinned."""
    return {**images_mod.service_tags(config, target), **IMAGES}


def service_env(config: Config) -> dict[str, str]:
    """The settings ConfigMap: the same names the local target's processes get."""
    return {
        **service_settings(config, "http://mlflow-service:5000"),
        **seed_settings(config),
    }


def allowed_hosts(namespace: str) -> list[str]:
    """MLflow's ``--allowed-hosts``: the Service's names in the cluster, and this machine.

    The port-forward passes the client's Host header, which carries the *local* port (any,
    ``--mlflow-port``); MLflow matches entries with ``*`` by fnmatch, others exactly
    (mlflow/server/security_utils.py ``is_allowed_host_header``).
    """
    names = [
        "mlflow-service",
        f"mlflow-service.{namespace}",
        f"mlflow-service.{namespace}.svc",
        f"mlflow-service.{namespace}.svc.cluster.local",
    ]
    here = [h for n in ("localhost", "127.0.0.1") for h in (n, f"{n}:*")]
    return [h for n in names for h in (n, f"{n}:5000")] + here


def api_workers(config: Config) -> int:
    """The model API's worker processes in a pod: the setting when given, else 2.

    The default setting follows this machine's CPUs; the pod's resources are sized for 2.
    """
    if config.source("api_workers") == "default":
        return POD_API_WORKERS
    return int(config["api_workers"])


API_PODS_SERVICE = "model-api-pods"
# Objects an earlier `up` may have applied that the current settings do not render: `up` deletes
# them (irisctl's own only) and `down` looks for them too. model-api-metrics was the ClusterIP
# Service Prometheus scraped before model-api-pods (a Service cannot become headless in place).
OPTIONAL = (
    ("autoscaling/v2", "HorizontalPodAutoscaler", "model-api"),
    ("policy/v1", "PodDisruptionBudget", "model-api"),
    ("v1", "Service", "model-api-metrics"),
)


def api_scale(config: Config) -> dict[str, Any]:
    """The model API's pod count: fixed (``api_replicas``), or an autoscaler's range; and
    whether a PodDisruptionBudget lets a drain evict one pod at a time (wherever there can be
    two or more; ``maxUnavailable: 1`` never blocks a drain of a single pod)."""
    scale = autoscale_range(config["api_autoscale"])
    return {
        "api_replicas": config["api_replicas"],
        "api_autoscale": scale,
        "api_pdb": api_pods_at_most(config) >= 2,
    }


def api_pods_at_most(config: Config) -> int:
    """The most model-API pods the settings allow: ``api_replicas``, or the autoscaler's max."""
    scale = autoscale_range(config["api_autoscale"])
    return scale[1] if scale else int(config["api_replicas"])


def render(config: Config, target: str) -> dict[str, str]:
    """Every manifest ``up`` applies, one component per file (no Secret values)."""
    c = config
    context: dict[str, Any] = {
        "namespace": c["namespace"],
        "secret_name": SECRET_NAME,
        "bucket": BUCKET,
        "minio_console": c["minio_console"],
        "mlflow_bucket_policy": bucket_policy(BUCKET),
        "images": images(config, target),
        # The cluster's default class (`up` checks there is one): minikube's is not always
        # `standard`, and another cluster's has another name.
        "storage_class": "",
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
        "service_env": service_env(config),
        "allowed_hosts": allowed_hosts(c["namespace"]),
        "api_workers": api_workers(config),
        **api_scale(config),
        "schedule": c["train_schedule"],
        "prometheus_yml": templates.prometheus_config(
            scrape_interval=c["scrape_interval"],
            rules_file="/etc/prometheus/alerts.yml",
            alertmanager="alertmanager-service:9093",
            # Every model-API pod, one target each, from the headless Service's DNS records
            # (publishNotReadyAddresses: also a pod alive without a model). Through a ClusterIP
            # each scrape would reach one replica at random and mix their counters.
            api=templates.DnsTargets(f"{API_PODS_SERVICE}.{c['namespace']}.svc", 8080),
            monitor="monitor-service:8001",
            prometheus="localhost:9090",
        ),
        "rules_yml": templates.cap_for(
            templates.live_accuracy_window(
                templates.read("prometheus/alerts.yml"), c["live_accuracy_window"]
            ),
            c["alert_for_max"],
        ),
        # The webhook URL is a credential: in the Secret, read by Alertmanager when it notifies.
        "alert_webhook": bool(c["alert_webhook_url"]),
        "alertmanager_yml": templates.render(
            "prometheus/alertmanager.yml.j2",
            webhook_url=None,
            webhook_url_file=WEBHOOK_URL_FILE if c["alert_webhook_url"] else None,
        ),
    }
    context["checksums"] = checksums(context, c["backend_store_uri"], c["alert_webhook_url"])
    return {
        f"{name}.yaml": templates.render(f"k8s/{name}.yaml.j2", **context) for name in MANIFESTS
    }


def checksums(context: dict[str, Any], backend_store_uri: str, webhook_url: str) -> dict[str, str]:
    """Workload → a hash of the configuration its pods read only at start (envFrom, mounted
    config files, the Secret's backend URI and webhook URL): in the pod template, a change
    rolls the pods."""

    def digest(*parts: Any) -> str:
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    settings = context["service_env"]
    return {
        "mlflow": digest(_fingerprint(backend_store_uri)),
        "model-api": digest(settings),
        "monitor": digest(settings),
        "prometheus": digest(context["prometheus_yml"], context["rules_yml"]),
        "alertmanager": digest(context["alertmanager_yml"], _fingerprint(webhook_url)),
    }


def _fingerprint(credential: str) -> str:
    """What an annotation may carry of a credential (a URI with a password, a webhook URL):
    a slow salted hash, so that a change still rolls the pods while the annotation, readable
    by anyone who may list Deployments, does not offer a fast offline guess."""
    if not credential:
        return ""
    return hashlib.pbkdf2_hmac("sha256", credential.encode(), b"irisctl-checksum", 100_000).hex()


CHECKSUM = "checksum/config"
SPEC_DIGEST = "irisctl/spec-digest"  # on a Job: the spec it ran, so a changed one runs again


def spec_digest(doc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc["spec"], sort_keys=True).encode()).hexdigest()[:16]


def pod_checksums(objs: list[dict[str, Any]]) -> dict[str, str]:
    """Deployment → the checksum annotation of its pod template (as applied or as found)."""
    out = {}
    for d in objs:
        if d.get("kind", "Deployment") == "Deployment":
            template = (d.get("spec") or {}).get("template") or {}
            annotations = (template.get("metadata") or {}).get("annotations") or {}
            if CHECKSUM in annotations:
                out[d["metadata"]["name"]] = str(annotations[CHECKSUM])
    return out


def documents(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """The rendered manifests as objects, in apply order."""
    import yaml

    return [d for text in rendered.values() for d in yaml.safe_load_all(text) if d]


def secret_document(namespace: str, values: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": SECRET_NAME, "namespace": namespace, "labels": dict(LABELS)},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()},
    }
