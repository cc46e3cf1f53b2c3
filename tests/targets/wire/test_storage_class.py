"""The data volumes on clusters whose storage differs from minikube's defaults: the emulator's
StorageClasses and DefaultStorageClass admission (apiserver.py), reached by the real client."""

from __future__ import annotations

import pytest

from irisctl.errors import IrisctlError

from .conftest import NS, target, up


def _replace_default_class(emu, name: str | None) -> None:
    """Remove minikube's ``standard``; with ``name``, add a default class of that name."""

    def change() -> None:
        emu.objects.pop(("StorageClass", "", "standard"))
        if name:
            emu.objects[("StorageClass", "", name)] = emu._stamp(
                ("storage.k8s.io", "v1", "storageclasses", "StorageClass", False),
                "",
                {
                    "metadata": {
                        "name": name,
                        "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                    },
                    "provisioner": "hostpath.csi.k8s.io",
                },
            )

    emu.call(change)


def test_the_volumes_use_the_clusters_default_storage_class(site):
    """A `standard` class hard-coded for minikube left every PVC Pending where the default class
    has another name (a profile without the default-storageclass addon, csi-hostpath)."""
    _replace_default_class(site.emu, "csi-hostpath-sc")
    up(target())
    claims = site.emu.list("PersistentVolumeClaim", NS)
    assert claims
    for claim in claims:
        assert claim["spec"]["storageClassName"] == "csi-hostpath-sc"
        assert claim["status"]["phase"] == "Bound", claim["metadata"]["name"]


def test_up_says_so_when_the_cluster_has_no_default_storage_class(site):
    _replace_default_class(site.emu, None)
    with pytest.raises(IrisctlError) as err:
        up(target())
    assert "no default StorageClass" in err.value.message
    assert "default-storageclass" in (err.value.hint or "")
    assert site.emu.get("Namespace", "", NS) is None  # nothing was applied
