"""The Kubernetes target's orchestration at the wire: ``KubeTarget`` with the real kubernetes
client, over HTTPS, against the API-server emulator and the minikube stub: credentials, the
Secret, training Jobs, logs, rollout failures. The pods' probes reach a real local HTTP server;
the image build is the only thing replaced (the ``site`` fixture).
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from irisctl import state
from irisctl.errors import IrisctlError
from irisctl.targets.kube import manifests
from tests.conftest import wait_until

from . import minikube_stub as stub
from .conftest import NS, PROFILE, target, up


def test_up_applies_every_manifest_server_side_and_kubectl_sees_them(site, kubeconfig):
    t = target()
    up(t)
    applies = [p for m, p in site.emu.requests if m == "PATCH"]
    assert applies and all("fieldManager=irisctl" in p and "force=false" in p for p in applies)
    posted = [p for m, p in site.emu.requests if m in ("POST", "PUT")]
    assert posted == []  # server-side apply only (no client-side create/replace)
    for doc in t.documents():
        kind, name = doc["kind"], doc["metadata"]["name"]
        assert site.emu.get(kind, "" if kind == "Namespace" else NS, name) is not None, (kind, name)
    if shutil.which("kubectl"):
        got = subprocess.run(
            ["kubectl", "--context", PROFILE, "get", "deploy,cronjob,pvc", "-n", NS, "-o", "json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert got.returncode == 0, got.stderr
        names = {i["metadata"]["name"] for i in json.loads(got.stdout)["items"]}
        assert names >= {"mlflow", "model-api", "monitor", "ml-model-training", "minio-data"}


def test_credentials_are_generated_once_and_never_printed(site, capsys):
    t = target()
    seen = up(t)
    first = t.secrets()
    assert len(first["minio-root-password"]) >= 32
    seen += up(target())  # again: kept, not regenerated
    assert target().secrets() == first
    shown = " ".join(f"{a} {b}" for a, b in seen) + capsys.readouterr().out
    shown += "".join(t.render().values()) + (site.home / "state.json").read_text()
    assert first["minio-root-password"] not in shown


def test_a_postgres_backend_store_goes_into_the_secret_only(site):
    uri = "postgresql://mlflow:s3cret-pw@db.example:5432/mlflow"
    t = target(backend_store_uri=uri)
    up(t)
    assert t.secrets()["mlflow-backend-store-uri"] == uri
    for kind in ("ConfigMap", "Deployment"):
        assert "s3cret-pw" not in json.dumps(site.emu.list(kind, NS))


def test_up_starts_a_stopped_minikube(site, minikube_stub):
    s = stub.load(minikube_stub)
    s["profiles"][PROFILE]["running"] = False
    stub.save(minikube_stub, s)
    up(target())
    assert any(line.startswith(f"-p {PROFILE} start") for line in stub.argv_log(minikube_stub))
    assert "--driver=docker" in " ".join(stub.argv_log(minikube_stub))
    assert stub.load(minikube_stub)["profiles"][PROFILE]["running"]


def test_train_runs_a_job_from_the_cronjob_and_streams_its_log(site):
    t = target()
    up(t)
    site.emu.job_outcome = lambda job, pod: (0, ["epoch 1", "accuracy 0.97"])
    lines: list[str] = []
    t.train(lines.append)
    jobs = [j for j in site.emu.list("Job", NS) if j["metadata"]["name"].startswith("ml-model")]
    assert len(jobs) == 1
    template = site.emu.get("CronJob", NS, "ml-model-training")["spec"]["jobTemplate"]["spec"]
    container = jobs[0]["spec"]["template"]["spec"]["containers"][0]
    assert container == template["template"]["spec"]["containers"][0]
    assert "accuracy 0.97" in "\n".join(lines)


def test_c7_train_refuses_while_a_training_job_is_active(site):
    t = target()
    up(t)
    site.emu.job_outcome = lambda job, pod: None  # the first training runs until the test ends it
    started = []
    import threading

    runner = threading.Thread(target=lambda: started.append(t.train(lambda line: None)))
    runner.start()
    wait_until(
        lambda: [
            j for j in site.emu.list("Job", NS) if j["metadata"]["name"].startswith("ml-model")
        ],
        timeout_s=10,
        what="the first training Job",
    )
    with pytest.raises(IrisctlError) as busy:
        target().train(lambda line: None)
    assert "training" in str(busy.value).lower()
    pod = site.emu.list("Pod", NS, "app.kubernetes.io/name=trainer")[0]["metadata"]["name"]
    site.emu.end_pod(NS, pod, 0, ["done"])
    runner.join(30)
    assert not runner.is_alive()


def test_a_manual_training_job_is_controlled_by_its_cronjob(site):
    up(target())
    outcome = target().train(lambda line: None)
    assert outcome.exit_code == 0
    jobs = site.emu.list("Job", NS, "app.kubernetes.io/name=trainer")
    owner = jobs[0]["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "CronJob" and owner["controller"] is True


def test_a_failed_training_job_reports_its_exit_code(site):
    t = target()
    up(t)
    site.emu.job_outcome = lambda job, pod: (
        (3, ["ValueError: no data"]) if "model" in job else (0, [])
    )
    outcome = t.train(lambda line: None)
    assert outcome.exit_code == 3
    job = next(j for j in site.emu.list("Job", NS) if j["metadata"]["name"].startswith("ml-model"))
    assert job["status"].get("failed", 0) >= 1


def test_services_report_rollouts_and_the_cronjob(site):
    t = target()
    up(t)
    states = {s.name: s for s in t.services()}
    assert {"mlflow", "model-api", "monitor"} <= set(states)
    assert all("ready" in s.detail or s.healthy for n, s in states.items() if n != "trainer")


def test_logs_redact_the_generated_credentials(site):
    t = target()
    up(t)
    password = t.secrets()["minio-root-password"]
    pod = site.emu.list("Pod", NS, "app.kubernetes.io/name=mlflow")[0]["metadata"]["name"]
    site.emu.log(NS, pod, f"boto3 connecting with {password}")
    wait_until(lambda: site.emu.call(lambda: site.emu.runtime[(NS, pod)].log), timeout_s=5)
    shown = "\n".join(t.logs("mlflow", follow=False, tail=None))
    assert "boto3 connecting with" in shown and password not in shown


def test_down_deletes_workloads_and_keeps_volumes_and_the_secret(site):
    t = target()
    up(t)
    t.down(purge=False)
    assert site.emu.list("Deployment", NS) == []
    assert site.emu.list("Pod", NS, "app.kubernetes.io/name=model-api") == []
    assert {p["metadata"]["name"] for p in site.emu.list("PersistentVolumeClaim", NS)} >= {
        "minio-data",
        "mlflow-data",
    }
    assert site.emu.get("Secret", NS, "iris-credentials") is not None
    assert not state.read(site.home)["up"]


def test_down_dry_run_lists_and_changes_nothing(site):
    t = target()
    up(t)
    before = len(site.emu.list("Deployment", NS))
    done = t.down(purge=True, dry_run=True)
    assert done and len(site.emu.list("Deployment", NS)) == before
    assert not [m for m, _ in site.emu.requests if m == "DELETE"]


def test_up_reports_a_crash_loop_with_its_last_log_lines(site):
    site.emu.container_trouble[(NS, "model-api")] = {
        "reason": "CrashLoopBackOff",
        "restarts": 4,
        "previous_log": ["starting", "ValueError: MLFLOW_TRACKING_URI is bad"],
    }
    with pytest.raises(IrisctlError) as err:
        up(target(rollout_timeout=2))
    assert "model-api: CrashLoopBackOff (restarts 4)" in err.value.message
    assert "MLFLOW_TRACKING_URI is bad" in err.value.message
    assert state.read(site.home)["up"]  # recorded once applied (issue 11)


def test_up_stops_on_an_image_pull_back_off_not_on_the_first_err_image_pull(site):
    site.emu.pull_backoff_s = 1.0
    site.emu.container_trouble[(NS, "mlflow")] = {"reason": "ImagePullBackOff"}
    t = target(rollout_timeout=600)
    seen: list[tuple[str, str]] = []
    t.start_forwarder = lambda: None  # type: ignore[method-assign]
    with pytest.raises(IrisctlError) as err:
        t.up(lambda step, what: seen.append((step, what)))
    assert "mlflow: ImagePullBackOff" in err.value.message and "after" not in err.value.message
    assert any("ErrImagePull" in what for step, what in seen if step == "mlflow"), seen


def test_a_training_job_deleted_while_followed_ends_the_wait(site):
    t = target()
    up(t)
    site.emu.job_outcome = lambda job, pod: None  # runs until the test acts

    def delete_the_job() -> None:
        wait_until(
            lambda: site.emu.list("Pod", NS, "app.kubernetes.io/name=trainer"),
            timeout_s=10,
            what="the training pod",
        )
        job = next(j for j in site.emu.list("Job", NS) if j["metadata"]["name"].startswith("ml-"))
        pod = site.emu.list("Pod", NS, "app.kubernetes.io/name=trainer")[0]["metadata"]["name"]
        site.emu.log(NS, pod, "training started")
        # `kubectl delete job` (Background): the Job and its pod go; the kubelet kills it (137).
        site.emu.end_pod(NS, pod, 137, ["Killed"])
        site.emu.call(
            lambda: site.emu._delete(
                ("batch", "v1", "jobs", "Job", True),
                NS,
                job["metadata"]["name"],
                "Background",
                False,
            )
        )

    import threading

    threading.Thread(target=delete_the_job, daemon=True).start()
    outcome = t.train(lambda line: None)
    assert "deleted" in (outcome.error or ""), outcome


def test_train_cancel_deletes_the_active_training_job_and_its_pod(site):
    """`irisctl train --cancel`: the active training Job goes with its pod (Foreground), the
    follower says it was deleted, a finished Job stays, and a second cancel finds nothing."""
    import threading

    t = target()
    up(t)
    site.emu.job_outcome = lambda job, pod: (0, ["done"])
    assert t.train(lambda line: None).exit_code == 0  # a finished Job: cancel leaves it
    finished = {j["metadata"]["name"] for j in site.emu.list("Job", NS)}
    site.emu.job_outcome = lambda job, pod: None  # the next one runs until cancelled
    outcomes = []
    runner = threading.Thread(target=lambda: outcomes.append(t.train(lambda line: None)))
    runner.start()

    def running() -> set[str]:
        jobs = {j["metadata"]["name"] for j in site.emu.list("Job", NS)} - finished
        pods = {p["metadata"]["labels"].get("job-name") for p in site.emu.list("Pod", NS)}
        return jobs & pods

    active = wait_until(running, timeout_s=30, what="the second training's pod")
    assert target().cancel_training() == [f"deleted job {name}" for name in sorted(active)]
    runner.join(30)
    assert not runner.is_alive() and "deleted" in (outcomes[0].error or ""), outcomes
    assert {j["metadata"]["name"] for j in site.emu.list("Job", NS)} == finished
    assert target().cancel_training() == []


def test_a_marker_password_appears_nowhere_but_the_secret(site, capsys):
    from irisctl.targets.kube import manifests

    marker = "MARKER-7f3a9c1e-not-a-real-password"
    up(target())  # the namespace; then the Secret is replaced by one holding the marker
    secret = manifests.secret_document(
        NS,
        {
            "minio-root-user": "iris-user",
            "minio-root-password": marker,
            "mlflow-backend-store-uri": f"postgresql://mlflow:{marker}@db:5432/mlflow",
        },
    )
    site.emu.call(lambda: site.emu.objects.pop(("Secret", NS, "iris-credentials")))
    site.emu.call(lambda: site.emu._create(("", "v1", "secrets", "Secret", True), NS, secret))
    t = target()
    seen = up(t)
    pod = site.emu.list("Pod", NS, "app.kubernetes.io/name=mlflow")[0]["metadata"]["name"]
    site.emu.log(NS, pod, f"boto3 using {marker}")
    wait_until(lambda: site.emu.call(lambda: site.emu.runtime[(NS, pod)].log), timeout_s=5)
    outputs = [
        " ".join(f"{a} {b}" for a, b in seen),
        "".join(t.render().values()),
        " ".join(s.detail for s in t.services()),
        "\n".join(t.logs("mlflow", follow=False, tail=None)),
        (site.home / "state.json").read_text(),
        json.dumps(
            [
                o
                for k, o in site.emu.call(lambda: dict(site.emu.objects)).items()
                if k[0] != "Secret"
            ]
        ),
        capsys.readouterr().out,
    ]
    assert all(marker not in out for out in outputs)
    assert t.secrets()["minio-root-password"] == marker  # kept, and the one way to see it


def test_an_older_secret_gains_mlflows_own_minio_user_and_the_setup_job_runs_again(site):
    """A stack from before issue 25: root keys only, and a bucket Job that succeeded with the
    old spec. `up` adds MLflow's user to the Secret (root keys kept) and reruns the Job."""
    t = target()
    up(t)
    old = {k: v for k, v in t.secrets().items() if not k.startswith("minio-mlflow-")}
    t.cluster().delete("v1", "Secret", "iris-credentials")
    t.cluster().apply(manifests.secret_document(NS, old))
    job = site.emu.get("Job", NS, "minio-create-bucket")
    assert job["status"].get("succeeded") == 1
    first_uid = job["metadata"]["uid"]
    stored = site.emu.objects[("Job", NS, "minio-create-bucket")]  # as an older irisctl left it
    stored["metadata"]["annotations"][manifests.SPEC_DIGEST] = "from-an-older-spec"

    seen = up(target())
    now = target().secrets()
    assert {k: now[k] for k in old} == old
    assert (
        now["minio-mlflow-user"].startswith("mlflow-") and len(now["minio-mlflow-password"]) >= 32
    )
    assert ("secret", "iris-credentials: added MLflow's own MinIO user") in seen
    assert site.emu.get("Job", NS, "minio-create-bucket")["metadata"]["uid"] != first_uid
    rerun_uid = site.emu.get("Job", NS, "minio-create-bucket")["metadata"]["uid"]
    wait_until(
        lambda: (site.emu.get("Job", NS, "minio-create-bucket").get("status") or {}).get(
            "succeeded"
        ),
        10,
        what="the rerun Job to succeed",
    )
    up(target())  # same spec, succeeded: left alone
    assert site.emu.get("Job", NS, "minio-create-bucket")["metadata"]["uid"] == rerun_uid


def _pod_specs(docs: list[dict]) -> dict[str, dict]:
    out = {}
    for doc in docs:
        spec = doc.get("spec", {})
        if doc["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        if "template" in spec:
            out[doc["metadata"]["name"]] = spec["template"]["spec"]
    return out


def test_the_signing_key_is_generated_once_and_mounted_only_into_the_trainer_and_the_api(site):
    from iris_services.common import signing

    t = target()
    up(t)
    key = t.secrets()[signing.SECRET_KEY]
    assert len(signing.parse_key(key)) == 32
    up(target())
    assert target().secrets()[signing.SECRET_KEY] == key  # kept: older versions stay valid
    pods = _pod_specs(t.documents())
    # Any mention of the Secret's key in a pod (a volume item or a secretKeyRef) gives it the key.
    holders = {name for name, pod in pods.items() if signing.SECRET_KEY in json.dumps(pod)}
    assert holders == {"model-api", "ml-model-training"}
    for name in holders:
        env_vars = pods[name]["containers"][0]["env"]
        assert {"name": signing.KEY_FILE_ENV, "value": "/var/run/iris-signing/key"} in env_vars


def test_a_secret_from_before_signing_gains_a_key_and_keeps_its_credentials(site):
    from iris_services.common import signing
    from irisctl.targets.kube import manifests

    t = target()
    up(t)
    old = {k: v for k, v in t.secrets().items() if k != signing.SECRET_KEY}
    site.emu.call(lambda: site.emu.objects.pop(("Secret", NS, "iris-credentials")))
    secret = manifests.secret_document(NS, old)
    site.emu.call(lambda: site.emu._create(("", "v1", "secrets", "Secret", True), NS, secret))
    seen = up(target())
    now = target().secrets()
    assert {k: now[k] for k in old} == old and len(signing.parse_key(now[signing.SECRET_KEY])) == 32
    assert any("generated the signing key" in what for step, what in seen if step == "secret")


def test_the_alert_webhook_url_lives_in_the_secret_and_follows_the_setting(site, capsys):
    """Issue 25 item 7: stored in the Secret (never a ConfigMap), changed and removed with the
    setting, never printed; removal relies on server-side apply dropping a field its manager
    no longer sends."""
    url = "https://hooks.example.test/services/tok3n-one"
    seen = up(target(alert_webhook_url=url))
    assert target().secrets()[manifests.WEBHOOK_KEY] == url
    config = site.emu.get("ConfigMap", NS, "alertmanager-config")
    assert "tok3n" not in json.dumps(config) and manifests.WEBHOOK_URL_FILE in json.dumps(config)
    seen += up(target(alert_webhook_url=url + "-two"))
    assert target().secrets()[manifests.WEBHOOK_KEY] == url + "-two"
    assert ("secret", "iris-credentials: alert webhook URL stored") in seen
    seen += up(target())
    assert manifests.WEBHOOK_KEY not in target().secrets()
    assert ("secret", "iris-credentials: alert webhook URL removed") in seen
    assert "tok3n" not in json.dumps(seen) + capsys.readouterr().out
