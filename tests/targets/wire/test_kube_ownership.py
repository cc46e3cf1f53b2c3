"""Issue 25 item 6 at the wire: the Kubernetes targets never take over what irisctl did not
create. "Someone else" is the real ``kubectl`` applying server-side as field manager
``team-ops`` to the API-server emulator, which answers field-manager conflicts as the
apiserver does (apiserver.py)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from irisctl import state
from irisctl.errors import BadInput, IrisctlError

from .conftest import NS, PROFILE, target, up

pytestmark = pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl not installed")

KUBECTL_APPLY = ("kubectl", "--context", PROFILE, "apply", "--server-side")
THEIRS = {"app.kubernetes.io/name": "theirs"}


def kubectl_apply(*docs: dict) -> None:
    """What a colleague does: ``kubectl apply --server-side`` under their own field manager."""
    subprocess.run(
        [*KUBECTL_APPLY, "--field-manager=team-ops", "-f", "-"],
        input=yaml.safe_dump_all(docs),
        text=True,
        check=True,
        capture_output=True,
    )


def their_namespace() -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": THEIRS}}


def their_settings() -> dict:
    """A ConfigMap named like irisctl's settings, with a key irisctl sets to another value."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "iris-settings", "namespace": NS},
        "data": {"MLFLOW_TRACKING_URI": "http://their-mlflow:5000"},
    }


def their_labels(emu) -> bool:
    """The namespace still carries only its owner's labels (and the API server's own)."""
    labels = emu.get("Namespace", "", NS)["metadata"]["labels"]
    return labels == {**THEIRS, "kubernetes.io/metadata.name": NS}


def objects_in(emu, namespace: str) -> list[tuple[str, str]]:
    return sorted((kind, name) for (kind, ns, name) in emu.objects if ns == namespace)


def test_up_refuses_a_namespace_someone_else_created_and_changes_nothing(site):
    kubectl_apply(their_namespace())
    with pytest.raises(BadInput) as err:
        up(target())
    assert err.value.exit_code == 2
    assert f"namespace {NS} exists and was not created by irisctl" in err.value.message
    assert "--adopt" in (err.value.hint or "")
    assert objects_in(site.emu, NS) == []  # no Secret, no ConfigMap, nothing applied
    assert their_labels(site.emu)  # not relabelled
    assert state.read(site.home) is None  # nothing recorded either


def test_up_adopt_uses_the_namespace_as_it_is_and_purge_then_refuses_to_delete_it(site):
    kubectl_apply(their_namespace())
    seen = up(target(adopt=True))
    assert ("namespace", f"{NS} adopted: left as it is; `down --purge` will not delete it") in seen
    assert their_labels(site.emu)
    assert site.emu.get("Deployment", NS, "mlflow") is not None
    up(target())  # adopted once: irisctl's own Secret there says so, --adopt not needed again
    with pytest.raises(IrisctlError) as err:
        target().down(purge=True)
    assert "not managed by irisctl" in err.value.message
    assert site.emu.get("Namespace", "", NS)["status"]["phase"] == "Active"
    done = target().down(purge=False)  # plain down still removes irisctl's workloads
    assert "deleted Deployment/mlflow" in done
    assert site.emu.get("Namespace", "", NS) is not None


def test_up_stops_on_the_api_servers_conflict_and_down_leaves_their_objects(site):
    kubectl_apply(their_namespace(), their_settings())
    with pytest.raises(IrisctlError) as err:
        up(target(adopt=True))
    assert "409 Conflict" in err.value.message
    assert 'conflict with "team-ops" using v1: .data.MLFLOW_TRACKING_URI' in err.value.message
    theirs = site.emu.get("ConfigMap", NS, "iris-settings")
    assert theirs["data"] == {"MLFLOW_TRACKING_URI": "http://their-mlflow:5000"}
    assert not theirs["metadata"].get("labels")
    done = target().down(purge=False)
    assert site.emu.get("ConfigMap", NS, "iris-settings") is not None  # unlabelled: survives
    left = "left ConfigMap/iris-settings (not irisctl's: no label app.kubernetes.io/managed-by)"
    assert left in done


def test_the_emulator_refuses_a_conflicting_apply_unless_forced(site):
    """The stand-in itself, as https://kubernetes.io/docs/reference/using-api/server-side-apply/
    ("Conflicts") describes it: same value is no conflict, another value is 409, force takes it."""
    kubectl_apply(their_namespace(), their_settings())
    cluster = target(adopt=True).cluster()
    same = their_settings()
    cluster.apply(same)  # irisctl applying the value team-ops set: shared, no conflict
    other = their_settings()
    other["data"]["MLFLOW_TRACKING_URI"] = "http://mlflow-service:5000"
    with pytest.raises(IrisctlError, match="409 Conflict"):
        cluster.apply(other)
    kept = site.emu.get("ConfigMap", NS, "iris-settings")["data"]["MLFLOW_TRACKING_URI"]
    assert kept == "http://their-mlflow:5000"
    cluster.dynamic.server_side_apply(  # what the old code did: force, taking the field over
        cluster._resource("v1", "ConfigMap"),
        body=other,
        name="iris-settings",
        namespace=NS,
        field_manager="irisctl",
        force_conflicts=True,
    )
    taken = site.emu.get("ConfigMap", NS, "iris-settings")["data"]["MLFLOW_TRACKING_URI"]
    assert taken == "http://mlflow-service:5000"
