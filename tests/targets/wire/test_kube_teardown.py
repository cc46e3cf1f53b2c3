"""`down` on a Kubernetes target at the wire: what it deletes and waits for, what it refuses,
and ``--cluster`` (minikube's ``stop``, the stub's)."""

from __future__ import annotations

import pytest

from irisctl import ops, settings, state
from irisctl.errors import BadInput, IrisctlError

from . import minikube_stub as stub
from .conftest import NS, PROFILE, target, up


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


def test_down_purge_cluster_deletes_the_namespace_and_stops_minikube(site):
    up(target())
    done = target().down(purge=True, cluster=True)
    assert site.emu.get("Namespace", "", NS) is None
    assert f"-p {PROFILE} stop" in stub.argv_log(site.stub)
    assert not stub.load(site.stub)["profiles"][PROFILE]["running"]
    assert f"stopped minikube profile {PROFILE}" in done
    assert state.read(site.home) is None


def test_the_cluster_flag_is_only_for_minikube(site):
    with pytest.raises(BadInput):
        target("kubernetes", context=PROFILE).down(purge=False, cluster=True)
    assert site.emu.requests == [] and stub.argv_log(site.stub) == []
