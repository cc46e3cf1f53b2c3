"""``doctor``'s checks for the minikube target: Docker's memory, and whether NetworkPolicies are
enforced."""

from __future__ import annotations

from ...errors import IrisctlError
from ..base import Check


def docker_memory_check(minikube_mb: int, api_pods: int = 1) -> Check:
    """On the docker driver minikube's node is a container limited to what Docker has
    (``docker info``'s MemTotal; Docker Desktop's VM is often 2 GiB): minikube refuses more
    (RSRC_OVER_ALLOC_MEM, cmd/minikube/cmd/start.go ``validateRequestedMemorySize``), and a
    node smaller than the stack's requests (with ``api_pods`` model-API pods) leaves pods
    Pending or OOM-killed."""
    from ...clients import docker
    from . import manifests

    need = manifests.stack_memory_mib(api_pods)
    try:
        have = int(docker.client().info().get("MemTotal") or 0) // 2**20
    except IrisctlError as exc:
        return Check("docker memory", "warn", exc.message, exc.hint or "")
    if have < minikube_mb:
        return Check(
            "docker memory",
            "fail",
            f"Docker has {have} MiB; minikube is set to {minikube_mb} MiB and will refuse",
            f"give Docker at least {max(need, minikube_mb)} MiB (Docker Desktop: Settings → "
            f"Resources), or lower IRISCTL_MINIKUBE_MEMORY_MB (the stack needs {need} MiB)",
        )
    if minikube_mb < need:
        return Check(
            "docker memory",
            "warn",
            f"minikube is set to {minikube_mb} MiB; the stack's pods and the node need {need} MiB",
            f"raise IRISCTL_MINIKUBE_MEMORY_MB to {need} (Docker has {have} MiB)",
        )
    return Check(
        "docker memory",
        "ok",
        f"Docker has {have} MiB; minikube {minikube_mb} MiB; the stack needs {need} MiB",
    )


def network_policy_check(profile: str) -> Check:
    """minikube's default CNI (bridge or kindnet with the docker driver) stores NetworkPolicies
    but enforces none; Calico or Cilium do, chosen only when the cluster is created."""
    return Check(
        "network policy",
        "warn",
        "minikube's default CNI does not enforce the stack's NetworkPolicies "
        "(any pod can reach MLflow, MinIO and Alertmanager)",
        f"recreate the cluster with one that does: minikube -p {profile} delete && "
        f"minikube -p {profile} start --driver=docker --cni=calico",
    )
