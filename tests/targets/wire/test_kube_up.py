"""What `up` on a Kubernetes target applies, waits for and reports, at the wire: the real
kubernetes client over HTTPS to the API-server emulator (apiserver.py), ``minikube`` the stub
that prints what minikube prints (minikube_stub.py), pods answering their probes from a real
local HTTP server (the ``site`` fixture). The rendering it applies is checked here too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import yaml

from irisctl import settings, state
from irisctl.errors import IrisctlError
from irisctl.targets.kube import manifests, rollout

from . import minikube_stub as stub
from .apiserver import ApiError
from .conftest import NS, PROFILE, target, up


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


def test_addons_are_opt_in(site, minikube_stub):
    up(target())
    assert not any("addons enable" in line for line in stub.argv_log(minikube_stub))
    up(target(minikube_addons="metrics-server"))
    enabled = [line for line in stub.argv_log(minikube_stub) if "addons enable" in line]
    assert all("metrics-server" in line for line in enabled)


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


def test_api_workers_come_from_the_settings():
    def workers(**flags):
        docs = manifests.documents(target(**flags).render())
        api = next(d for d in docs if d["metadata"]["name"] == "model-api")
        env = api["spec"]["template"]["spec"]["containers"][0]["env"]
        return next(e["value"] for e in env if e["name"] == "IRIS_API_WORKERS")

    assert workers() == "2" and workers(api_workers=3) == "3"
