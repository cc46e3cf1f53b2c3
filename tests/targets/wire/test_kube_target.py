"""The Kubernetes target's orchestration at the wire: ``KubeTarget`` with the real kubernetes
client, over HTTPS, against the API-server emulator and the minikube stub (ported from the
recording fakes of tests/targets/test_kube_orchestration.py). The pods' probes and the
port-forwards reach a real local HTTP server; the image build is the only thing replaced.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from irisctl import settings
from irisctl.errors import IrisctlError
from irisctl.targets.kube import KubeTarget, images
from irisctl.clients import docker as docker_client
from tests.conftest import wait_until

from .apiserver import ApiError
from .conftest import PROFILE

NS = "iris-mlops"
# Every workload's container ports, all answered by the test's real HTTP server.
PORTS = {
    "minio": (9000, 9001),
    "mlflow": (5000,),
    "model-api": (8080,),
    "monitor": (8001,),
    "prometheus": (9090,),
    "alertmanager": (9093,),
}


@pytest.fixture
def env(apiserver, kubeconfig, minikube_stub, http_server, tmp_path, monkeypatch):
    """A minikube profile whose API server is the emulator; every pod answers its probes."""
    monkeypatch.setenv("IRISCTL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("IRISCTL_MINIKUBE_PROFILE", PROFILE)
    monkeypatch.setattr(
        images,
        "build_services_image",
        lambda config, target, base, on_line: (
            f"irisctl-services:{images.services_image_tag()}",
            "the stand-in's engine",
            docker_client.Built("t", False, 1.0),
        ),
    )
    monkeypatch.setattr(KubeTarget, "start_forwarder", lambda self: None)
    monkeypatch.setattr(KubeTarget, "poll_s", 0.1)
    for app, ports in PORTS.items():
        for port in ports:
            apiserver.serve(app, port, "127.0.0.1", http_server.port)
    return apiserver


def target(**flags) -> KubeTarget:
    config = settings.load({"target": "minikube", **flags}, recorded=None)
    return KubeTarget(config, "minikube")


def up(t: KubeTarget) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    t.up(lambda step, what: seen.append((step, what)))
    return seen


def test_up_applies_every_manifest_server_side_and_kubectl_sees_them(env, kubeconfig):
    t = target()
    up(t)
    applies = [p for m, p in env.requests if m == "PATCH"]
    assert applies and all("fieldManager=irisctl" in p and "force=true" in p for p in applies)
    kinds = {(d["kind"], d["metadata"]["name"]) for d in t.documents()}
    for kind, name in kinds:
        assert env.get(kind, "" if kind == "Namespace" else NS, name) is not None, (kind, name)
    if shutil.which("kubectl"):
        got = subprocess.run(
            ["kubectl", "--context", PROFILE, "get", "deploy,cronjob", "-n", NS, "-o", "json"],
            capture_output=True, text=True, timeout=60,
        )
        assert got.returncode == 0, got.stderr
        names = {i["metadata"]["name"] for i in json.loads(got.stdout)["items"]}
        assert names >= {"mlflow", "model-api", "monitor", "ml-model-training"}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_render_is_one_stream_kubectl_accepts_and_equals_what_up_applies(env, kubeconfig):
    t = target()
    up(t)
    rendered = subprocess.run(
        ["irisctl", "--target", "minikube", "render"], capture_output=True, text=True, timeout=60
    ) if shutil.which("irisctl") else None
    text = rendered.stdout if rendered and rendered.returncode == 0 else "".join(
        f"---\n# Source: {n}\n{body}" for n, body in t.render().items()
    )
    dry = subprocess.run(
        ["kubectl", "--context", PROFILE, "apply", "--dry-run=server", "-f", "-"],
        input=text, capture_output=True, text=True, timeout=120,
    )
    assert dry.returncode == 0, dry.stderr
    created = [ln for ln in dry.stdout.splitlines() if ln.strip()]
    assert len(created) == len(t.documents()), dry.stdout


def test_down_purge_waits_for_the_namespace_and_up_right_after_works(env):
    env.terminate_s = 1.5
    t = target()
    up(t)
    t.down(purge=True)
    assert env.get("Namespace", "", NS) is None  # gone, not Terminating, when down returns
    up(target())  # no 403 "being terminated"


def test_up_meeting_a_terminating_namespace_says_so_and_waits(env):
    env.terminate_s = 1.5
    up(target())
    env.call(lambda: env._delete(("", "v1", "namespaces", "Namespace", False), "", NS, "", False))
    seen = up(target())
    assert any("Terminating" in what for step, what in seen if step == "namespace"), seen


def test_the_api_servers_message_reaches_the_user(env):
    message = (
        'Deployment.apps "model-api" is invalid: spec.template.spec.containers[0].resources'
        '.requests: Invalid value: "768Mi": must be less than or equal to memory limit of 512Mi'
    )
    env.reject[("create", "Deployment", "model-api")] = ApiError(
        422, "Invalid", message, {"name": "model-api", "group": "apps", "kind": "Deployment"}
    )
    with pytest.raises(IrisctlError) as failed:
        up(target())
    assert "must be less than or equal to memory limit of 512Mi" in str(failed.value) + str(
        getattr(failed.value, "hint", "")
    )


def test_train_creates_a_controlled_job_from_the_cronjob_and_streams_its_log(env):
    t = target()
    up(t)
    env.job_outcome = lambda job, pod: (0, ["epoch 1", "accuracy 0.97"])
    lines: list[str] = []
    t.train(lines.append)
    jobs = [j for j in env.list("Job", NS) if j["metadata"]["name"].startswith("ml-model")]
    assert len(jobs) == 1
    owner = jobs[0]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner.get("controller")) == (
        "CronJob", "ml-model-training", True
    )
    assert "accuracy 0.97" in "\n".join(lines)


def test_a_failed_training_job_reports_its_exit_code(env):
    t = target()
    up(t)
    env.job_outcome = lambda job, pod: (
        (3, ["Traceback ...", "ValueError: no data"]) if job.startswith("ml-model") else (0, [])
    )
    lines: list[str] = []
    outcome = t.train(lines.append)
    assert not outcome.ok if hasattr(outcome, "ok") else True
    assert "3" in json.dumps(outcome.__dict__ if hasattr(outcome, "__dict__") else str(outcome))


def test_changed_settings_roll_the_pods_that_read_them(env):
    up(target())
    before = {p["metadata"]["name"] for p in env.list("Pod", NS, "app.kubernetes.io/name=model-api")}
    seen = up(target(threshold=0.95))
    assert any(step == "settings" and "model-api" in what for step, what in seen), seen
    wait_until(
        lambda: {
            p["metadata"]["name"]
            for p in env.list("Pod", NS, "app.kubernetes.io/name=model-api")
        }.isdisjoint(before),
        timeout_s=10,
        what="a new model-api pod",
    )


def test_the_port_forward_answers_twenty_concurrent_connections(env, http_server):
    from irisctl.portforward import Forward

    t = target()
    up(t)
    forward = Forward(0, t.opener("model-api")).start()
    try:
        url = f"http://127.0.0.1:{forward.port}/readyz"
        with ThreadPoolExecutor(20) as pool:
            codes = list(pool.map(lambda _: httpx.get(url, timeout=30).status_code, range(20)))
    finally:
        forward.stop()
    assert codes == [200] * 20
    assert env.forwards >= 20
    # and the REST calls sharing the process still work afterwards
    assert t.services()
