"""The model API's pod count: ``api_replicas``, ``api_autoscale`` and what ``up`` and ``down`` do
with the autoscaler and disruption budget they render. Stand-ins: the API-server emulator
(apiserver.py: its Deployment controller makes ``spec.replicas`` pods; its HPA controller holds
a Deployment within ``minReplicas..maxReplicas`` as kubernetes' ``horizontal.go`` does before it
reads any metric; ``metrics.k8s.io`` in discovery only while ``metrics_server`` is on) and the
minikube stub (its addons), reached by the real kubernetes client and the real ``minikube``
command line. The end-to-end run (test_minikube_e2e.py) serves, swaps and rolls two replicas.
"""

from __future__ import annotations

import json

import pytest

from irisctl.errors import IrisctlError
from irisctl.targets.kube import teardown

from .conftest import NS, PROFILE, target, up


def _api(site) -> dict[str, object]:
    """kind → the model API's object of that kind, for the kinds the count involves."""
    found = {}
    for kind in ("Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        obj = site.emu.get(kind, NS, "model-api")
        if obj is not None:
            found[kind] = obj
    return found


def test_two_replicas_a_budget_then_an_autoscaler_then_one_pod_again(site):
    t = target(api_replicas=2)
    up(t)
    found = _api(site)
    assert found["Deployment"]["spec"]["replicas"] == 2
    assert "PodDisruptionBudget" in found and "HorizontalPodAutoscaler" not in found
    pods = site.emu.list("Pod", NS, "app.kubernetes.io/name=model-api")
    assert len(pods) == 2
    api = {s.name: s for s in t.services()}["model-api"]
    assert (api.state, api.detail.split(",")[0]) == ("running", "2/2 ready")

    # minikube: `up` enables metrics-server for the autoscaler (the stack alone needs none)
    up(target(api_autoscale="3..4"))
    addons = json.loads((site.stub / "state.json").read_text())["addons"]
    assert addons["metrics-server"] is True
    found = _api(site)
    assert found["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == 3
    assert found["Deployment"]["spec"]["replicas"] == 3  # the autoscaler's floor, not `up`'s

    seen = up(target())  # back to the default: one pod, nothing left over
    found = _api(site)
    assert set(found) == {"Deployment"} and found["Deployment"]["spec"]["replicas"] == 1
    said = [what for step, what in seen if step == "manifests"]
    assert "deleted HorizontalPodAutoscaler/model-api (no longer in the settings)" in said
    assert "deleted PodDisruptionBudget/model-api (no longer in the settings)" in said


def test_down_deletes_an_autoscaler_an_up_with_other_settings_left(site):
    up(target(api_autoscale="2..3"))
    lines = teardown.delete(target().cluster(), target().documents(), False, False)
    assert "deleted HorizontalPodAutoscaler/model-api" in lines
    assert "deleted PodDisruptionBudget/model-api" in lines
    assert _api(site) == {}


def test_autoscaling_without_metrics_server_is_refused_before_any_change(site, docker_api):
    t = target("kubernetes", context=PROFILE, registry="r.example/team", api_autoscale="1..3")
    with pytest.raises(IrisctlError) as err:
        up(t)
    assert "metrics-server" in err.value.message and "api_replicas" in (err.value.hint or "")
    assert site.emu.get("Namespace", "", NS) is None

    site.emu.metrics_server = True  # metrics-server's APIService registered
    up(target("kubernetes", context=PROFILE, registry="r.example/team", api_autoscale="1..3"))
    assert "HorizontalPodAutoscaler" in _api(site)
