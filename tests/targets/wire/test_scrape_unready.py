"""Prometheus in the cluster scrapes a model API that is alive but serves no model yet.

Stand-ins: the API-server emulator (apiserver.py), and the kubelet stand-in (kubelet.py) running
the rendered pods as local processes, this machine's real ``prometheus`` among them. Its Service
proxy is kube-proxy's part: a Service reaches only Ready pods, unless it sets
``publishNotReadyAddresses`` (kubernetes ``pkg/controller/util/endpointslice`` ``podToEndpoint``:
``ready := service.Spec.PublishNotReadyAddresses || (serving && !terminating)``). Before the
metrics Service, Prometheus scraped ``model-api-service``, which has no endpoint until a champion
is served: ``up`` was 0 and IrisModelApiDown fired for an API that was only waiting for a model.
"""

from __future__ import annotations

import httpx

from iris_services.common import signing
from irisctl import settings
from irisctl.clients import kube
from irisctl.targets.kube import manifests
from tests.conftest import wait_until

from .conftest import PROFILE
from .kubelet import LocalKubelet

NS = "iris-mlops"


def test_prometheus_sees_a_model_api_that_is_alive_without_a_model(apiserver, kubeconfig, tmp_path):
    kubelet = LocalKubelet(apiserver, tmp_path / "node")
    try:
        cluster = kube.Cluster.connect(kube.resolve(str(kubeconfig), PROFILE), NS)
        config = settings.load({"scrape_interval": "1s"})
        docs = manifests.documents(manifests.render(config, "minikube"))
        cluster.apply(next(d for d in docs if d["kind"] == "Namespace"))
        cluster.apply(
            manifests.secret_document(
                NS,
                {
                    "minio-root-user": "iris-root",
                    "minio-root-password": "root-secret-123",
                    "minio-mlflow-user": "mlflow-user",
                    "minio-mlflow-password": "mlflow-secret-123",
                    "mlflow-backend-store-uri": manifests.DEFAULT_BACKEND_URI,
                    signing.SECRET_KEY: signing.new_key(),
                },
            )
        )
        for doc in docs:  # the whole stack but the nightly training: no champion, ever
            if doc["kind"] not in ("Namespace", "CronJob"):
                cluster.apply(doc)

        api = f"http://127.0.0.1:{kubelet.service_port(NS, 'model-api-pods', 8080)}"
        prometheus = f"http://127.0.0.1:{kubelet.service_port(NS, 'prometheus-service', 9090)}"

        def answers(url: str) -> int | None:
            try:
                return httpx.get(url, timeout=5).status_code
            except httpx.HTTPError:
                return None

        wait_until(lambda: answers(f"{api}/healthz") == 200, 180, 0.5, "the model API to listen")
        assert answers(f"{api}/readyz") == 503  # alive, no model: not Ready
        traffic = kubelet.service_port(NS, "model-api-service", 8080)
        assert answers(f"http://127.0.0.1:{traffic}/healthz") is None  # no Ready endpoint

        last: dict = {}

        def scraped_up() -> bool:
            try:
                active = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()["data"]
            except (httpx.HTTPError, ValueError):
                return False
            for t in active["activeTargets"]:
                if t["labels"]["job"] == "iris-model-api":
                    last.update(t)
                    return t["health"] == "up"
            return False

        # A scrape before the API listened may have failed; through model-api-service (Ready
        # pods only) every scrape fails for as long as there is no champion: "down" for good.
        wait_until(
            scraped_up,
            45,
            0.5,
            lambda: f"an 'up' scrape; last: {last.get('health')} {last.get('lastError')}",
        )

        def loaded() -> list:
            r = httpx.get(
                f"{prometheus}/api/v1/query", params={"query": "iris_api_model_loaded"}, timeout=5
            )
            return r.json()["data"]["result"]

        (sample,) = wait_until(loaded, 30, 0.5, "iris_api_model_loaded in Prometheus")
        assert sample["value"][1] == "0"  # the runbook's "alive, no model", not "down"
    finally:
        kubelet.stop()
