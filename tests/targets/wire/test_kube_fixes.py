"""The Kubernetes targets against the wire stand-ins: each test is one of issue 11's defects,
failing without its fix. The real kubernetes client talks HTTPS to the API-server emulator
(apiserver.py), ``minikube`` is the stub that prints what minikube prints (minikube_stub.py),
and pods "serve" through real local HTTP servers (conftest.HttpServer)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import yaml

from irisctl import ops, settings, state
from irisctl.clients import minikube
from irisctl.errors import IrisctlError
from irisctl.targets.kube import manifests, rollout
from tests.conftest import free_port, wait_until

from . import minikube_stub as stub
from .apiserver import ApiError
from .conftest import NS, PROFILE, target, up

# -- defect 1 ------------------------------------------------------------------------------------


def test_docker_env_is_read_as_json_from_minikube(minikube_stub):
    """minikube prints JSON only with --shell none; otherwise `export` lines."""
    env = minikube.docker_env(PROFILE)
    assert env["DOCKER_HOST"] and env["DOCKER_TLS_VERIFY"] == "1"
    assert any("--shell none" in line for line in stub.argv_log(minikube_stub))


# -- defect 2 ------------------------------------------------------------------------------------


def test_first_up_on_an_empty_cluster_does_not_wait_for_a_model_api_without_a_model(site):
    """/readyz is 503 until a champion exists; `up` needs the API alive, not ready."""
    site.http.status_for["/readyz"] = 503
    seen = up(target())
    assert ("model-api", "alive (ready once it serves a model)") in seen
    assert state.read(site.home)["up"]


def test_a_failed_up_is_recorded_as_up_so_train_status_and_down_act_on_it(site):
    site.http.status_for["/-/ready"] = 503  # Prometheus never ready: the wait times out
    with pytest.raises(IrisctlError) as err:
        up(target(rollout_timeout=2))
    assert "prometheus" in err.value.message
    recorded = state.read(site.home)
    assert recorded["up"] and recorded["target"] == "minikube"
    assert target().is_up()  # so `train --now` does not exit 3


# -- defect 4 and the kubelet's error (defect 12) ------------------------------------------------


def test_every_one_of_many_concurrent_connections_through_the_forward_works(site):
    up(target())
    t = target()
    errors: list[str] = []
    forwards = t.forward(errors.append)
    try:
        url = f"http://127.0.0.1:{t.forwarder.local_port('model-api')}/healthz"

        def get(_: int) -> int:
            return httpx.get(url, timeout=30).status_code

        with ThreadPoolExecutor(40) as pool:
            codes = list(pool.map(get, range(40)))
        assert codes == [200] * 40, errors
        # and the REST calls made meanwhile still work
        assert t.cluster().find("v1", "Pod", "app.kubernetes.io/name=model-api")
    finally:
        for f in forwards:
            f.stop()


def test_the_forward_logs_the_kubelets_error(site):
    up(target())
    t = target()
    site.emu.serve("monitor", 8001, "127.0.0.1", free_port())  # nothing listens there
    errors: list[str] = []
    forwards = t.forward(errors.append)
    try:
        port = t.forwarder.local_port("monitor")
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        wait_until(lambda: errors, 10, 0.1, "the forwarder to report the kubelet's error")
        assert "connection refused" in errors[0]
    finally:
        for f in forwards:
            f.stop()


# -- defect 5 ------------------------------------------------------------------------------------


def test_mlflow_accepts_the_forwards_host_header_whatever_the_local_port():
    from mlflow.server.security_utils import is_allowed_host_header

    docs = manifests.documents(target().render())
    mlflow = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "mlflow"
    )
    args = mlflow["spec"]["template"]["spec"]["containers"][0]["args"]
    allowed = next(a for a in args if a.startswith("--allowed-hosts=")).split("=", 1)[1]
    hosts = allowed.split(",")
    for host in ("localhost:15000", "127.0.0.1:15000", "localhost:5000", "mlflow-service:5000"):
        assert is_allowed_host_header(hosts, host), host
    assert not is_allowed_host_header(hosts, "evil.example:5000")


# -- defect 6 ------------------------------------------------------------------------------------


def test_stopping_the_forwarder_returns_once_it_has_exited_and_its_ports_are_free(site):
    from irisctl.targets.kube.forwarding import _running

    up(target())
    t = target()
    t.start_forwarder()
    pid = t.forwarder.pid()
    assert pid is not None
    assert t.stop_forwarder()
    assert not _running(pid)
    t.start_forwarder()  # at once: the ports are free again
    assert t.forwarder.alive()
    t.stop_forwarder()


# -- defect 7 ------------------------------------------------------------------------------------


def test_down_purge_returns_once_the_namespace_is_gone_and_up_then_succeeds(site):
    site.emu.terminate_s = 1.5
    up(target())
    seen: list[tuple[str, str]] = []
    done = target().down(purge=True, progress=lambda step, s: seen.append((step, s)))
    assert site.emu.get("Namespace", "", NS) is None, done
    assert any("is gone" in line for line in done)
    assert ("namespace", f"{NS} terminating (0s)") in seen
    up(target())  # no 403 "being terminated"


def test_up_meeting_a_terminating_namespace_says_so_and_waits(site):
    site.emu.terminate_s = 1.5
    up(target())
    t = target()
    t.cluster().delete("v1", "Namespace", NS)
    seen = up(t)
    assert any(step == "namespace" and "Terminating" in s for step, s in seen)
    assert site.emu.get("Deployment", NS, "model-api") is not None


# -- defect 8 ------------------------------------------------------------------------------------


def test_the_api_servers_message_reaches_the_user(site):
    message = (
        'Deployment.apps "monitor" is invalid: spec.template.spec.containers[0].image: Required'
    )
    site.emu.reject[("create", "Deployment", "monitor")] = ApiError(422, "Invalid", message)
    with pytest.raises(IrisctlError) as err:
        up(target())
    assert "422" in err.value.message and message in err.value.message


def test_a_transport_error_is_shown_whole():
    from urllib3.exceptions import MaxRetryError, SSLError

    from irisctl.clients.kube import transport_cause

    cause = "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired"
    exc = MaxRetryError(None, "/api", SSLError(cause + " (_ssl.c:1006)" + " " * 200 + "end"))
    assert cause in transport_cause(exc) and transport_cause(exc).endswith("end")


# -- defect 9 ------------------------------------------------------------------------------------


def test_changed_settings_roll_the_pods_that_read_them_and_up_says_which(site):
    up(target())
    before = site.emu.get("Deployment", NS, "model-api")["spec"]["template"]
    seen = up(target(accuracy_threshold=0.95))
    after = site.emu.get("Deployment", NS, "model-api")["spec"]["template"]
    assert before["metadata"]["annotations"] != after["metadata"]["annotations"]
    said = [s for step, s in seen if step == "settings"]
    assert said and "model-api" in said[0] and "monitor" in said[0]
    assert "prometheus" not in said[0]


def test_unchanged_settings_roll_nothing(site):
    up(target())
    assert not [s for step, s in up(target()) if step == "settings"]


# -- defect 10 -----------------------------------------------------------------------------------


def test_waiting_shows_a_failing_probes_message(site):
    site.http.status_for["/metrics"] = 503
    up_ = target(rollout_timeout=2)
    with pytest.raises(IrisctlError) as err:
        up(up_)
    assert "monitor: not ready: Readiness probe failed" in err.value.message


def test_waiting_shows_why_pods_cannot_be_created(site):
    """Quota, LimitRange or a webhook refuse the pods: the ReplicaSet says FailedCreate."""
    site.emu.pod_create_error[(NS, "monitor")] = (
        "exceeded quota: compute, requested: memory=256Mi, used: memory=1Gi, limited: memory=1Gi"
    )
    with pytest.raises(IrisctlError) as err:
        up(target(rollout_timeout=2))
    assert "monitor: FailedCreate: " in err.value.message
    assert "exceeded quota: compute" in err.value.message


def test_waiting_shows_why_the_bucket_jobs_pod_cannot_be_created(site):
    """The Job controller says FailedCreate as a Warning Event on the Job (no condition, unlike
    a ReplicaSet). The Job was labelled ``minio``, so this showed as "waiting for its pod"."""
    site.emu.pod_create_error[(NS, "minio-create-bucket")] = (
        "exceeded quota: compute, requested: cpu=100m, used: cpu=2, limited: cpu=2"
    )
    with pytest.raises(IrisctlError) as err:
        up(target(rollout_timeout=2))
    assert "minio-create-bucket: FailedCreate: Error creating: " in err.value.message
    assert "exceeded quota: compute" in err.value.message


def test_the_finished_bucket_job_stays_so_later_ups_do_not_run_it_again():
    """With ``ttlSecondsAfterFinished`` the TTL-after-finished controller
    (pkg/controller/ttlafterfinished) deletes the finished Job, and every `up` after that hour
    made it again and waited for it; kept, `up` sees it succeeded with the same spec."""
    docs = manifests.documents(manifests.render(settings.load({}), "minikube"))
    (job,) = [d for d in docs if d["kind"] == "Job"]
    assert "ttlSecondsAfterFinished" not in job["spec"]
    assert job["metadata"]["labels"]["app.kubernetes.io/name"] == "minio-create-bucket"


def test_err_image_pull_is_not_stuck_but_image_pull_back_off_is():
    assert rollout.reason("ErrImagePull: pull access denied") not in rollout.STUCK
    assert rollout.reason("ImagePullBackOff: Back-off pulling image") in rollout.STUCK


# -- defect 11 -----------------------------------------------------------------------------------


def test_render_is_one_yaml_stream_of_exactly_what_up_applies():
    from irisctl.render import stream

    t = target()
    text = stream(t.render())
    parsed = [d for d in yaml.safe_load_all(text) if d]
    assert parsed == t.documents()
    assert text.count("# Source: ") == len(t.render())


def test_kubectl_reads_the_rendered_stream_as_the_same_objects(site):
    """kubectl, a second client: server-side dry run of `irisctl render` once the namespace
    exists (a dry run creates nothing, so on an empty cluster every namespaced object is 404)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is required (Debian: kubernetes-client)")
    up(target())
    rendered = subprocess.run(
        [sys.executable, "-m", "irisctl", "--target", "minikube", "render"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
    )
    assert rendered.returncode == 0, rendered.stderr
    proc = subprocess.run(
        [kubectl, "--context", PROFILE, "apply", "--dry-run=server", "-o", "name", "-f", "-"],
        input=rendered.stdout,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    names = sorted(proc.stdout.split())
    want = sorted(f"{d['kind'].lower()}/{d['metadata']['name']}" for d in target().documents())
    assert [n.split("/", 1)[0].split(".")[0] + "/" + n.split("/", 1)[1] for n in names] == want


# -- defect 12 -----------------------------------------------------------------------------------


def test_a_manual_training_job_is_controlled_by_its_cronjob(site):
    up(target())
    outcome = target().train(lambda line: None)
    assert outcome.exit_code == 0
    jobs = site.emu.list("Job", NS, "app.kubernetes.io/name=trainer")
    owner = jobs[0]["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "CronJob" and owner["controller"] is True


def test_down_purge_refuses_a_namespace_irisctl_does_not_manage(site, kubeconfig):
    t = target("kubernetes", context=PROFILE, registry="r.example", namespace="team-prod")
    t.cluster().apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-prod"}})
    with pytest.raises(IrisctlError) as err:
        t.down(purge=True)
    assert "not managed by irisctl" in err.value.message
    assert site.emu.get("Namespace", "", "team-prod") is not None


def test_the_purge_confirmation_names_the_namespace_and_context(site):
    config = settings.load({"target": "kubernetes", "context": PROFILE, "registry": "r"})
    assert ops.purge_question(config) == (
        f"Delete namespace {NS} in context {PROFILE} (every model, run and metric in it)?"
    )


def test_a_stopped_docker_is_reported_by_minikube_start_with_its_fix(site, monkeypatch):
    """No ping of the host's Docker first: minikube's own reason code gets mapped."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    state_ = stub.load(site.stub)
    state_["profiles"][PROFILE]["running"] = False
    state_["start_fails"] = "PROVIDER_DOCKER_NOT_RUNNING"
    stub.save(site.stub, state_)
    with pytest.raises(IrisctlError) as err:
        up(target(minikube_cpus=1, minikube_memory_mb=512))
    assert "PROVIDER_DOCKER_NOT_RUNNING" in err.value.message and "start Docker" in err.value.hint


def test_addons_are_opt_in(site, minikube_stub):
    up(target())
    assert not any("addons enable" in line for line in stub.argv_log(minikube_stub))
    up(target(minikube_addons="metrics-server"))
    enabled = [line for line in stub.argv_log(minikube_stub) if "addons enable" in line]
    assert all("metrics-server" in line for line in enabled)


def test_api_workers_come_from_the_settings():
    def workers(**flags):
        docs = manifests.documents(target(**flags).render())
        api = next(d for d in docs if d["metadata"]["name"] == "model-api")
        env = api["spec"]["template"]["spec"]["containers"][0]["env"]
        return next(e["value"] for e in env if e["name"] == "IRIS_API_WORKERS")

    assert workers() == "2" and workers(api_workers=3) == "3"


def test_ports_free_after_the_forward_stops_quickly():
    """_running tells an exited (zombie) child from a live process."""
    from irisctl.targets.kube.forwarding import _running

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while _running(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(proc.pid)
    proc.wait()
