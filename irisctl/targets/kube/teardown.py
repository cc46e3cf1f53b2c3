"""``down``: what is deleted (workloads; with ``purge`` the whole namespace) and what is kept."""

from __future__ import annotations

import time
from typing import Any

from ...clients.kube import Cluster
from ...errors import IrisctlError
from ..base import Progress
from .jobs import TRAINER_SELECTOR
from .manifests import OPTIONAL, SECRET_NAME
from .objects import MANAGED_BY, label, name

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
    out += [o for o in OPTIONAL if o not in out]  # what an `up` with other settings applied
    return out + [
        ("batch/v1", "Job", name(j)) for j in cluster.find("batch/v1", "Job", TRAINER_SELECTOR)
    ]


def delete(
    cluster: Cluster, documents: list[dict[str, Any]], purge: bool, dry_run: bool
) -> list[str]:
    """Delete (or, ``dry_run``, look for) what ``down`` removes; one line per object."""
    prefix = "would delete" if dry_run else "deleted"
    done = _delete_each(cluster, doomed(cluster, documents, purge), not purge, dry_run)
    if not purge and any(line.startswith(prefix) for line in done):
        done.append(
            f"kept the PersistentVolumeClaims and Secret {SECRET_NAME} "
            "(runs, models, metrics, credentials); `down --purge` deletes them"
        )
    return done


def _delete_each(
    cluster: Cluster, objects: list[tuple[str, str, str]], ours_only: bool, dry_run: bool
) -> list[str]:
    """Delete each (apiVersion, kind, name) that exists (``ours_only``: only irisctl's, the
    others are "left"); one line per object."""
    prefix = "would delete" if dry_run else "deleted"
    done = []
    for api_version, kind, obj in objects:
        found = cluster.get(api_version, kind, obj)
        if found is None:
            continue
        if ours_only and not managed(found):  # same name, someone else's: not ours to delete
            done.append(f"left {kind}/{obj} (not irisctl's: no label {MANAGED_BY[0]})")
            continue
        if dry_run or cluster.delete(api_version, kind, obj):
            done.append(f"{prefix} {kind}/{obj}")
    return done


def retire(cluster: Cluster, documents: list[dict[str, Any]]) -> list[str]:
    """Delete irisctl's objects that the settings no longer render (``manifests.OPTIONAL``: an
    autoscaler after ``api_autoscale`` is unset, ...); one line per object deleted."""
    rendered = {(d["apiVersion"], d["kind"], d["metadata"]["name"]) for d in documents}
    gone = [o for o in OPTIONAL if o not in rendered]
    return [
        f"{line} (no longer in the settings)"
        for line in _delete_each(cluster, gone, True, False)
        if line.startswith("deleted")
    ]


def terminating(namespace: dict[str, Any] | None) -> bool:
    """The namespace is being deleted: the API server refuses new objects in it (403)."""
    if namespace is None:
        return False
    phase = (namespace.get("status") or {}).get("phase")
    return phase == "Terminating" or bool(namespace["metadata"].get("deletionTimestamp"))


def wait_gone(
    cluster: Cluster, timeout_s: float, poll_s: float, progress: Progress | None = None
) -> float:
    """Until the namespace no longer exists (its finalizers done); seconds waited.

    A deleted namespace stays ``Terminating`` while its objects go; until then `up` could not
    create anything in it ("… because it is being terminated").
    """
    started = time.monotonic()
    said = -5.0  # the first look is reported at once, then every 5 s
    while True:
        found = cluster.get("v1", "Namespace", cluster.namespace)
        waited = time.monotonic() - started
        if found is None:
            return waited
        if waited > timeout_s:
            raise IrisctlError(
                f"namespace {cluster.namespace} is still terminating after {timeout_s:.0f}s",
                f"`kubectl get all -n {cluster.namespace}` shows what holds it; "
                "run the command again to keep waiting",
            )
        if progress is not None and waited - said >= 5:
            progress("namespace", f"{cluster.namespace} terminating ({waited:.0f}s)")
            said = waited
        time.sleep(poll_s)


def managed(obj: dict[str, Any]) -> bool:
    """The object carries irisctl's label (``up`` created it); ``down`` deletes only those."""
    return label(obj, MANAGED_BY[0]) == MANAGED_BY[1]


def check_managed(cluster: Cluster, context: str) -> None:
    """Refuse to purge a namespace irisctl did not create (the label ``up`` sets)."""
    found = cluster.get("v1", "Namespace", cluster.namespace)
    if found is None:
        return
    if not managed(found):
        raise IrisctlError(
            f"namespace {cluster.namespace} in context {context} is not managed by irisctl "
            "(no label app.kubernetes.io/managed-by=irisctl); refusing to delete it",
            "`irisctl down` without --purge deletes only irisctl's objects; then "
            f"`kubectl delete pvc,secret -n {cluster.namespace} -l "
            "app.kubernetes.io/managed-by=irisctl` deletes its data",
        )
