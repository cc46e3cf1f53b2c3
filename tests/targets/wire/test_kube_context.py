"""Which cluster a Kubernetes-target command acts on, at the wire: the guards that refuse before
anything changes (RELIABILITY.md F1-F3) and the place ``up`` recorded for later commands.

The cluster a guard must keep irisctl away from is the API-server emulator itself (usually the
kubeconfig's current-context): every request it receives is recorded, so "nothing was sent"
is checked where it would arrive. ``minikube`` is the stub on PATH (or absent from it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from irisctl import ops, settings, state
from irisctl.errors import BadInput, IrisctlError
from irisctl.targets.kube import KubeTarget

from . import minikube_stub as stub
from .conftest import NS, PROFILE, target, up

# A documentation address (RFC 5737 TEST-NET-1): a cluster that is not minikube's, never dialled.
FOREIGN = "https://192.0.2.10:6443"


def _with_context(kubeconfig: Path, name: str, server: str) -> None:
    """Add context ``name`` (its own cluster entry at ``server``) to ``kubeconfig``."""
    config = yaml.safe_load(kubeconfig.read_text())
    config["clusters"].append({"name": name, "cluster": {"server": server}})
    user = config["users"][0]["name"]
    config["contexts"].append({"name": name, "context": {"cluster": name, "user": user}})
    kubeconfig.write_text(yaml.safe_dump(config))


def _nothing_changed(site) -> None:
    assert site.emu.requests == []  # not even a read: no context was connected to
    assert site.builds == []
    assert state.read(site.home) is None


def test_f1_no_minikube_is_a_clear_error_and_nothing_runs(site, monkeypatch):
    bare = [d for d in os.environ["PATH"].split(os.pathsep) if not (Path(d) / "minikube").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(bare))
    with pytest.raises(IrisctlError) as err:
        up(target())
    assert "minikube" in err.value.message and "install" in (err.value.hint or "")
    _nothing_changed(site)


def test_f2_docker_not_running_surfaces_minikubes_reason_and_changes_nothing(site, monkeypatch):
    """No ping of the host's Docker first: minikube's own reason code gets mapped."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    state_ = stub.load(site.stub)
    state_["profiles"][PROFILE]["running"] = False
    state_["start_fails"] = "PROVIDER_DOCKER_NOT_RUNNING"
    stub.save(site.stub, state_)
    with pytest.raises(IrisctlError) as err:
        up(target(minikube_cpus=1, minikube_memory_mb=512))
    assert "PROVIDER_DOCKER_NOT_RUNNING" in err.value.message and "start Docker" in err.value.hint
    _nothing_changed(site)


def test_f3_minikube_refuses_its_context_when_it_names_another_server(site, kubeconfig):
    """The profile's context points at a foreign API server; the current-context (the emulator)
    is not a fallback either."""
    site.emu.write_kubeconfig(kubeconfig, "prod")
    _with_context(kubeconfig, PROFILE, FOREIGN)
    with pytest.raises(IrisctlError) as err:
        up(target())
    assert "192.0.2.10" in err.value.message and "not minikube profile" in err.value.message
    assert "update-context" in (err.value.hint or "")
    _nothing_changed(site)


def test_f3_minikube_refuses_a_kubeconfig_without_its_context(site, kubeconfig):
    site.emu.write_kubeconfig(kubeconfig, "prod")  # current-context prod, no PROFILE
    with pytest.raises(IrisctlError) as err:
        up(target())
    assert f"context {PROFILE!r} is not in" in err.value.message
    _nothing_changed(site)


def test_f3_the_kubernetes_target_never_uses_the_current_context(site, kubeconfig):
    with pytest.raises(BadInput) as err:
        up(target("kubernetes", registry="r.example/x"))
    assert "--context" in err.value.hint and f"current-context {PROFILE!r}" in err.value.hint
    _nothing_changed(site)


def test_f3_an_empty_kubeconfig_is_refused(tmp_path):
    """An empty kubeconfig would make a client dial localhost:8080."""
    empty = tmp_path / "empty"
    empty.write_text("")
    t = target("kubernetes", context="prod", kubeconfig=str(empty))
    with pytest.raises(IrisctlError) as err:
        t.context()
    assert "no contexts" in err.value.message


def test_the_kubernetes_target_needs_a_registry(site):
    with pytest.raises(BadInput) as err:
        up(target("kubernetes", context=PROFILE))
    assert "--registry" in err.value.message
    _nothing_changed(site)


def test_the_minikube_target_refuses_another_context_name():
    with pytest.raises(BadInput) as err:
        target(context="prod").context()
    assert "--target kubernetes --context" in (err.value.hint or "")


def test_later_commands_act_on_the_recorded_cluster(site, kubeconfig, docker_api, monkeypatch):
    """`up --target kubernetes --context C --namespace N --kubeconfig K --registry R` records
    its place; a later command with no flags and no KUBECONFIG acts on that cluster there."""
    t = target(
        "kubernetes",
        context=PROFILE,
        registry="r.example/team",
        namespace="ml",
        kubeconfig=str(kubeconfig),
    )
    up(t)
    assert any(p.endswith("/_ping") for _, p, _ in docker_api.requests)  # it builds here
    monkeypatch.delenv("KUBECONFIG")
    later = settings.load({}, recorded=state.read(site.home))
    assert (later["context"], later["namespace"], later["registry"]) == (
        PROFILE,
        "ml",
        "r.example/team",
    )
    assert later["kubeconfig"] == str(kubeconfig)
    chosen, _ = ops._current(later)
    assert isinstance(chosen, KubeTarget) and chosen.name == "kubernetes"
    assert chosen.secrets() == t.secrets()  # read back from the cluster, in namespace ml
    assert {s.name: s.state for s in chosen.services()}["mlflow"] == "running"
    assert site.emu.get("Deployment", "ml", "mlflow") is not None
    assert site.emu.get("Namespace", "", NS) is None  # nothing went to the default namespace
