"""Waiting for what ``up`` applied, and saying why anything is not ready yet."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ...clients.kube import Cluster
from ...errors import IrisctlError
from ..base import Progress
from .objects import PART_OF, label

# Deployments irisctl waits for and reports, in the order they are applied.
WORKLOADS = ("minio", "mlflow", "model-api", "monitor", "prometheus", "alertmanager")
# Ready only once a champion exists (readinessProbe /readyz): `up` waits until it is alive, the
# first training runs, and then ops.up waits for /readyz (issue 11: the first `up` deadlocked).
ALIVE_IS_ENOUGH = ("model-api",)
# Container waiting reasons that will not fix themselves while `up` waits. Not ErrImagePull:
# the kubelet retries a pull; only when it keeps failing does the pod show ImagePullBackOff.
STUCK = {"ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"}


def reason(why: str) -> str:
    """The Kubernetes reason a ``why`` message starts with (``CrashLoopBackOff``, …)."""
    return why.split(":")[0].split(" ")[0]


def rolled_out(d: dict[str, Any]) -> bool:
    """Like `kubectl rollout status`: the newest generation observed, updated, ready, available."""
    spec, status = d.get("spec") or {}, d.get("status") or {}
    wanted = spec.get("replicas", 1)
    return (
        status.get("observedGeneration", 0) >= d["metadata"].get("generation", 1)
        and (status.get("updatedReplicas") or 0) >= wanted
        and (status.get("readyReplicas") or 0) >= wanted
        and (status.get("availableReplicas") or 0) >= wanted
    )


def alive(pods: list[dict[str, Any]]) -> bool:
    """Some pod runs with every container started (its readiness aside), not being deleted."""
    for pod in pods:
        status = pod.get("status") or {}
        statuses = status.get("containerStatuses") or []
        if (
            status.get("phase") == "Running"
            and not pod["metadata"].get("deletionTimestamp")
            and statuses
            and all(
                "running" in (cs.get("state") or {}) and cs.get("started", True) for cs in statuses
            )
        ):
            return True
    return False


def wait_ready(cluster: Cluster, progress: Progress, timeout_s: float, poll_s: float) -> None:
    """Until every Deployment is rolled out (``ALIVE_IS_ENOUGH``: alive) and the bucket Job has
    succeeded, saying why not."""
    deadline = time.monotonic() + timeout_s
    said: dict[str, str] = {}
    while True:
        only_alive: set[str] = set()
        waiting = pending(cluster, only_alive)
        for name in (*WORKLOADS, "minio-create-bucket"):
            now = waiting.get(name, ALIVE if name in only_alive else "healthy")
            if said.get(name) != now:
                progress(name, now)
                said[name] = now
        if not waiting:
            return
        stuck = {n: why for n, why in waiting.items() if reason(why) in STUCK}
        if stuck or time.monotonic() > deadline:
            shown = stuck or waiting
            raise IrisctlError(
                "not ready"
                + ("" if stuck else f" after {timeout_s:.0f}s")
                + ": "
                + "; ".join(f"{n}: {why}" for n, why in shown.items()),
                f"`irisctl logs {next(iter(shown))}`; what was applied stays, "
                "`irisctl up` again continues",
            )
        time.sleep(poll_s)


ALIVE = "alive (ready once it serves a model)"


def pending(cluster: Cluster, only_alive: set[str] | None = None) -> dict[str, str]:
    """Workload → why it is not ready yet (absent: ready); ``only_alive`` gets the names that
    are alive but not ready (``ALIVE_IS_ENOUGH``)."""
    deployments = {d["metadata"]["name"]: d for d in cluster.find("apps/v1", "Deployment")}
    pods = cluster.find("v1", "Pod", PART_OF)
    out = {}
    for name in WORKLOADS:
        d = deployments.get(name)
        mine = [p for p in pods if label(p, "app.kubernetes.io/name") == name]
        if d is None:
            out[name] = "not created yet"
        elif rolled_out(d):
            continue
        elif name in ALIVE_IS_ENOUGH and alive(mine):
            if only_alive is not None:
                only_alive.add(name)
        else:
            out[name] = why(cluster, name, pods)
    job = cluster.get("batch/v1", "Job", "minio-create-bucket")
    status = (job or {}).get("status") or {}
    if job is not None and not status.get("succeeded"):
        out["minio-create-bucket"] = why(cluster, "minio-create-bucket", pods)
    return out


def why(cluster: Cluster, component: str, pods: list[dict[str, Any]]) -> str:
    """The most telling reason a component's pods are not ready, with log lines on crashes."""
    mine = [p for p in pods if label(p, "app.kubernetes.io/name") == component]
    for pod in mine:
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        for cs in status.get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            said = waiting.get("reason")
            if said == "CrashLoopBackOff":
                last = [ln for ln in cluster.pod_log(name, tail=3, previous=True) if ln]
                return f"CrashLoopBackOff (restarts {cs.get('restartCount', 0)}), last log: " + (
                    " | ".join(last)[-300:] or "empty"
                )
            if said and said != "ContainerCreating":
                return f"{said}: {waiting.get('message', '')}".strip(": ")[:300]
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                return f"{cond.get('reason', 'Unschedulable')}: {cond.get('message', '')}"[:300]
    if not mine:
        return not_created(cluster, component) or "waiting for its pod"
    phase = (mine[0].get("status") or {}).get("phase", "Pending")
    if phase == "Running":
        probe = probe_failure(cluster, mine[0])
        return f"not ready: {probe}" if probe else "starting"
    return phase.lower()


def not_created(cluster: Cluster, component: str) -> str:
    """Why a workload has no pod: its Deployment's or ReplicaSets' ``ReplicaFailure`` condition
    (quota, LimitRange, an admission webhook: reason ``FailedCreate``), or for a Job, which gets
    no condition for it, the ``FailedCreate`` Warning Event its controller records."""
    owners = [
        *cluster.find("apps/v1", "Deployment", f"app.kubernetes.io/name={component}"),
        *cluster.find("apps/v1", "ReplicaSet", f"app.kubernetes.io/name={component}"),
        *cluster.find("batch/v1", "Job", f"app.kubernetes.io/name={component}"),
    ]
    for owner in owners:
        for cond in (owner.get("status") or {}).get("conditions") or []:
            if cond.get("status") != "True":
                continue
            if cond.get("type") == "ReplicaFailure" or cond.get("reason") == "FailedCreate":
                return f"{cond.get('reason') or 'FailedCreate'}: {cond.get('message', '')}"
    for owner in owners:
        if owner.get("kind") == "Job":
            said = newest_event(cluster, owner, lambda e: e.get("reason") == "FailedCreate")
            if said:
                return f"FailedCreate: {said['message']}"[:300]
    return ""


def probe_failure(cluster: Cluster, pod: dict[str, Any]) -> str:
    """The newest failing probe's message for a running, unready pod (the kubelet reports it
    as an ``Unhealthy`` Event; the Ready condition only says which containers are unready)."""
    newest = newest_event(cluster, pod, lambda e: e.get("reason") == "Unhealthy")
    return str(newest["message"]) if newest else ""


def newest_event(
    cluster: Cluster, obj: dict[str, Any], keep: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    """The newest Event about ``obj`` (by kind and name) that ``keep`` accepts and that has a
    message, or None."""
    events = cluster.find("v1", "Event", fields=f"involvedObject.name={obj['metadata']['name']}")
    kind = obj.get("kind")
    found = [
        e
        for e in events
        if e.get("message")
        and (not kind or (e.get("involvedObject") or {}).get("kind") in (None, kind))
        and keep(e)
    ]
    return max(found, key=event_time) if found else None


def event_time(event: dict[str, Any]) -> str:
    """When an Event last happened (RFC 3339), as the API server stamps it."""
    return str(event.get("lastTimestamp") or event.get("eventTime") or "")
