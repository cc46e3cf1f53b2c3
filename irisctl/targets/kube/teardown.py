"""``down``: what is deleted (workloads; with ``purge`` the whole namespace) and what is kept."""

from __future__ import annotations

from typing import Any

from ...clients.kube import Cluster
from .jobs import TRAINER_SELECTOR
from .manifests import SECRET_NAME
from .objects import name

KEPT = {"Namespace", "PersistentVolumeClaim", "Secret"}


def doomed(
    cluster: Cluster, documents: list[dict[str, Any]], purge: bool
) -> list[tuple[str, str, str]]:
    """(apiVersion, kind, name) of everything ``down`` deletes, in deletion order."""
    if purge:
        return [("v1", "Namespace", cluster.namespace)]
    out = [
        (d["apiVersion"], d["kind"], d["metadata"]["name"])
        for d in reversed(documents)
        if d["kind"] not in KEPT
    ]
    return out + [
        ("batch/v1", "Job", name(j)) for j in cluster.find("batch/v1", "Job", TRAINER_SELECTOR)
    ]


def delete(
    cluster: Cluster, documents: list[dict[str, Any]], purge: bool, dry_run: bool
) -> list[str]:
    """Delete (or, ``dry_run``, look for) what ``down`` removes; one line per object."""
    prefix = "would delete" if dry_run else "deleted"
    done = []
    for api_version, kind, obj in doomed(cluster, documents, purge):
        if dry_run:
            present = cluster.get(api_version, kind, obj) is not None
        else:
            present = cluster.delete(api_version, kind, obj)
        if present:
            done.append(f"{prefix} {kind}/{obj}")
    if not purge and done:
        done.append(
            f"kept the PersistentVolumeClaims and Secret {SECRET_NAME} "
            "(runs, models, metrics, credentials); `down --purge` deletes them"
        )
    return done
