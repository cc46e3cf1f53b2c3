"""Issue 25 item 5 at the wire: the MinIO setup Job's real shell script, run by the kubelet
stand-in against moto's S3 in MinIO's place, with ``mc`` being mc_stub.py.

Proven here: the rendered script runs to exit 0 with the Secret's keys, waits for the S3
endpoint, creates the bucket (it exists afterwards), and makes the admin calls in order with
well-formed arguments and a policy file that parses. Not proven (moto has no admin API): that
MinIO accepts them and then refuses the MLflow user outside its bucket.
"""

from __future__ import annotations

import json

import boto3

from irisctl import settings
from irisctl.clients import kube
from irisctl.targets.kube import manifests
from tests.conftest import wait_until

from .conftest import PROFILE
from .kubelet import LocalKubelet

NS = "iris-mlops"


def test_the_setup_job_creates_the_bucket_and_mlflows_user(apiserver, kubeconfig, tmp_path):
    kubelet = LocalKubelet(apiserver, tmp_path / "node")
    try:
        cluster = kube.Cluster.connect(kube.resolve(str(kubeconfig), PROFILE), NS)
        docs = manifests.documents(manifests.render(settings.load({}), "minikube"))
        keys = {
            "minio-root-user": "iris-root",
            "minio-root-password": "root-secret-123",
            "minio-mlflow-user": "mlflow-user",
            "minio-mlflow-password": "mlflow-secret-123",
            "mlflow-backend-store-uri": manifests.DEFAULT_BACKEND_URI,
        }
        cluster.apply(next(d for d in docs if d["kind"] == "Namespace"))
        cluster.apply(manifests.secret_document(NS, keys))
        minio = [d for d in docs if "minio" in d["metadata"]["name"]]
        assert {d["kind"] for d in minio} >= {"Deployment", "Service", "ConfigMap", "Job"}
        for doc in minio:
            cluster.apply(doc)

        def finished():
            job = apiserver.get("Job", NS, "minio-create-bucket") or {}
            status = job.get("status") or {}
            return status if status.get("succeeded") or status.get("failed") else None

        status = wait_until(finished, timeout_s=90, what="the setup Job to finish")
        pods = apiserver.list("Pod", NS, "app.kubernetes.io/name=minio-create-bucket")
        log = "\n".join(cluster.pod_log(pods[0]["metadata"]["name"]))
        assert status.get("succeeded") == 1, log
        assert "Added `iris` successfully." in log
        assert "Bucket created successfully `iris/mlflow`." in log

        port = kubelet.service_port(NS, "minio-service", 9000)
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            aws_access_key_id="x",
            aws_secret_access_key="x",
            region_name="us-east-1",
        )
        assert "mlflow" in {b["Name"] for b in s3.list_buckets()["Buckets"]}

        (admin_log,) = [p for d in kubelet.scratch for p in d.rglob("admin.log")]
        calls = [json.loads(line) for line in admin_log.read_text().splitlines()]
        assert [c[:2] for c in calls] == [
            ["policy", "create"],
            ["user", "add"],
            ["policy", "attach"],
        ]
        assert calls[0][3] == "iris-mlflow"
        assert calls[1][3:] == ["mlflow-user", "mlflow-secret-123"]
        assert calls[2][3:] == ["iris-mlflow", "--user", "mlflow-user"]
    finally:
        kubelet.stop()
