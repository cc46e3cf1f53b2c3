"""Small readers of Kubernetes objects as plain dicts (the API's JSON), shared by the modules."""

from __future__ import annotations

from typing import Any

PART_OF = "app.kubernetes.io/part-of=irisctl"
MANAGED_BY = ("app.kubernetes.io/managed-by", "irisctl")


def name(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def label(obj: dict[str, Any], key: str) -> str | None:
    labels: dict[str, str] = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(key)


def newest_first(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(objs, key=lambda o: o["metadata"].get("creationTimestamp") or "", reverse=True)


def pod_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def job_active(job: dict[str, Any]) -> bool:
    """True until the Job has a Complete or Failed condition."""
    status = job.get("status") or {}
    return not any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
