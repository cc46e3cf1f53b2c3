"""A model API that starts slowly (it waits up to 30 s for MLflow before it listens) under the
kubelet's probes: the emulator's probe workers (apiserver.py, after kubernetes'
``pkg/kubelet/prober/worker.go``) on a compressed clock, against the Deployment ``up`` applies,
reached over the wire by the real kubernetes client."""

from __future__ import annotations

from irisctl.targets.kube import manifests
from tests.conftest import free_port, wait_until

from .conftest import NS, target


def _api_pod(emu) -> dict | None:
    pods = emu.list("Pod", NS, "app.kubernetes.io/name=model-api")
    return pods[0] if pods else None


def _event_count(emu, pod: str, reason: str) -> int:
    return sum(
        e.get("count", 1)
        for e in emu.list("Event", NS)
        if e["involvedObject"]["name"] == pod and e["reason"] == reason
    )


def test_a_slow_starting_model_api_is_not_killed_by_its_liveness_probe(site):
    """Without a startupProbe, liveness (every 15 s, 3 failures) killed the API at ~30 s, while
    it still waited for MLflow: a restart loop on a slow first `up`."""
    emu = site.emu
    emu.serve("model-api", 8080, "127.0.0.1", free_port())  # not listening yet
    emu.probe_clock_s = 5.0  # each 0.2 s tick is 5 s of the pod's life
    t = target()
    cluster = t.cluster()
    for doc in manifests.documents(t.render()):
        if doc["kind"] == "Namespace" or (
            doc["kind"] == "Deployment" and doc["metadata"]["name"] == "model-api"
        ):
            cluster.apply(doc)
    pod = wait_until(lambda: _api_pod(emu), 10, 0.05, "the model API's pod")["metadata"]["name"]
    # 12 failed probes, 5 s apart: a minute of not listening, twice what the liveness allowed.
    wait_until(lambda: _event_count(emu, pod, "Unhealthy") >= 12, 20, 0.05, "a minute of probes")
    assert _event_count(emu, pod, "Killing") == 0
    assert _api_pod(emu)["status"]["containerStatuses"][0]["restartCount"] == 0

    emu.serve("model-api", 8080, "127.0.0.1", site.http.port)  # it listens now
    wait_until(
        lambda: _api_pod(emu)["status"]["containerStatuses"][0]["ready"],
        20,
        0.05,
        "the model API to turn ready once it listens",
    )
    assert _api_pod(emu)["status"]["containerStatuses"][0]["restartCount"] == 0


def test_a_hung_model_api_is_still_restarted_by_its_liveness_probe(site):
    """The startupProbe only holds liveness off until the API has started once."""
    emu = site.emu
    emu.probe_clock_s = 5.0
    t = target()
    cluster = t.cluster()
    for doc in manifests.documents(t.render()):
        if doc["kind"] == "Namespace" or (
            doc["kind"] == "Deployment" and doc["metadata"]["name"] == "model-api"
        ):
            cluster.apply(doc)
    wait_until(
        lambda: (
            (_api_pod(emu) or {}).get("status", {}).get("containerStatuses", [{}])[0].get("ready")
        ),
        20,
        0.05,
        "the model API to turn ready",
    )
    emu.serve("model-api", 8080, "127.0.0.1", free_port())  # hangs: nothing answers any more
    wait_until(
        lambda: _api_pod(emu)["status"]["containerStatuses"][0]["restartCount"] >= 1,
        20,
        0.05,
        "the liveness probe to restart the hung API",
    )
    pod = _api_pod(emu)["metadata"]["name"]
    assert _event_count(emu, pod, "Killing") >= 1
