"""The minikube binary: only the calls irisctl needs, each bounded in time."""

from __future__ import annotations

import json
import shutil
import subprocess

from ..errors import IrisctlError

INSTALL_HINT = "install minikube: https://minikube.sigs.k8s.io/docs/start/"


def docker_env(profile: str) -> dict[str, str]:
    """``minikube docker-env -o json``: the environment that points Docker at minikube's engine."""
    binary = shutil.which("minikube")
    if binary is None:
        raise IrisctlError("minikube is not installed", INSTALL_HINT)
    proc = subprocess.run(
        [binary, "-p", profile, "docker-env", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        reason = (proc.stderr or proc.stdout).strip().splitlines()
        raise IrisctlError(
            f"minikube docker-env failed: {reason[-1] if reason else proc.returncode}",
            f"is the cluster running? `minikube -p {profile} status`",
        )
    try:
        env = json.loads(proc.stdout)
    except ValueError:
        raise IrisctlError("minikube docker-env printed something that is not JSON") from None
    return {k: str(v) for k, v in env.items() if k.startswith("DOCKER_")}
