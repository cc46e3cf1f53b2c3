"""The minikube binary: only the calls irisctl needs, each bounded in time, each ``-p PROFILE``."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from urllib.parse import urlparse

from ..errors import IrisctlError

INSTALL_HINT = "install minikube: https://minikube.sigs.k8s.io/docs/start/"
# minikube's reason codes (its `--output json` and plain output carry them) → what to do.
REASONS = {
    "PROVIDER_DOCKER_NOT_RUNNING": "Docker is not running: start Docker, then retry",
    "PROVIDER_DOCKER_NOT_FOUND": "Docker is not installed: install Docker, then retry",
    "PROVIDER_DOCKER_NEWGRP": "your user cannot use Docker: `sudo usermod -aG docker $USER`",
    "PROVIDER_DOCKER_VERSION_EXIT_1": "Docker does not answer: restart Docker, then retry",
    "RSRC_INSUFFICIENT_CORES": "not enough CPUs for minikube: lower IRISCTL_MINIKUBE_CPUS",
    "RSRC_INSUFFICIENT_SYS_MEMORY": "not enough memory: lower IRISCTL_MINIKUBE_MEMORY_MB",
    "RSRC_INSUFFICIENT_CONTAINER_MEMORY": "Docker has too little memory: raise Docker's limit",
    # minikube's own words (cmd/minikube/cmd/start.go, pkg/minikube/reason/reason.go).
    "RSRC_OVER_ALLOC_MEM": "more memory was asked for than this machine has: lower "
    "IRISCTL_MINIKUBE_MEMORY_MB (minikube's default is 4096)",
    "GUEST_DRIVER_MISMATCH": "the profile PROFILE was created with another driver: delete it "
    "(`minikube delete -p PROFILE`, which deletes its data) or use another profile "
    "(IRISCTL_MINIKUBE_PROFILE)",
    "GUEST_PROVISION": "minikube could not create its node: `minikube delete -p PROFILE`, retry",
}


def binary() -> str:
    found = shutil.which("minikube")
    if found is None:
        raise IrisctlError("minikube is not installed", INSTALL_HINT)
    return found


def _run(profile: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [binary(), "-p", profile, *args], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise IrisctlError(
            f"`minikube -p {profile} {' '.join(args)}` did not finish within {timeout:.0f}s",
            f"check `minikube -p {profile} status`",
        ) from None


def _failure(what: str, profile: str, output: str) -> IrisctlError:
    for code, fix in REASONS.items():
        if code in output:
            return IrisctlError(f"{what} failed: {code}", fix.replace("PROFILE", profile))
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    return IrisctlError(
        f"{what} failed: {lines[-1][:300] if lines else 'no output'}",
        f"see `minikube -p {profile} logs`",
    )


def status(profile: str) -> dict[str, str]:
    """``minikube status -o json`` (non-zero exit when anything is stopped); {}: no profile."""
    proc = _run(profile, "status", "-o", "json", timeout=30)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        return {}
    if isinstance(data, list):  # several nodes: the control plane comes first
        data = data[0] if data else {}
    return {k: str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def running(profile: str) -> bool:
    s = status(profile)
    return s.get("Host") == "Running" and s.get("APIServer") == "Running"


def start(profile: str, cpus: int, memory_mb: int, on_line: Callable[[str], None]) -> None:
    """``minikube start --driver=docker`` with the given resources, streaming its output."""
    argv = [
        binary(),
        "-p",
        profile,
        "start",
        "--driver=docker",
        # Images are built in minikube's Docker (docker-env): containerd or cri-o have none.
        "--container-runtime=docker",
        f"--cpus={cpus}",
        f"--memory={memory_mb}mb",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.strip():
            on_line(line.rstrip())
    if proc.wait() != 0:
        raise _failure("minikube start", profile, "".join(seen))


def enable_addons(profile: str, addons: list[str], on_line: Callable[[str], None]) -> None:
    """Enable ``addons`` unless they are on already (none by default: the stack needs none)."""
    if not addons:
        return
    proc = _run(profile, "addons", "list", "-o", "json", timeout=60)
    try:
        listed = json.loads(proc.stdout) if proc.returncode == 0 else {}
    except ValueError:
        listed = {}
    for addon in addons:
        if (listed.get(addon) or {}).get("Status") == "enabled":
            continue
        on_line(f"enabling the {addon} addon")
        proc = _run(profile, "addons", "enable", addon, timeout=300)
        if proc.returncode != 0:
            raise _failure(f"minikube addons enable {addon}", profile, proc.stderr + proc.stdout)


def stop(profile: str) -> None:
    proc = _run(profile, "stop", timeout=300)
    if proc.returncode != 0:
        raise _failure("minikube stop", profile, proc.stderr + proc.stdout)


def ip(profile: str) -> str:
    proc = _run(profile, "ip", timeout=30)
    if proc.returncode != 0:
        raise _failure("minikube ip", profile, proc.stderr + proc.stdout)
    return proc.stdout.strip()


def is_its_server(profile: str, server: str) -> bool:
    """True when a kubeconfig server URL is this profile's API server.

    With the docker driver on Linux it is the node's IP; on macOS and Windows Docker publishes
    the API server on localhost.
    """
    host = urlparse(server).hostname or ""
    return host in (ip(profile), "127.0.0.1", "localhost", "::1")


def docker_env(profile: str) -> dict[str, str]:
    """The environment that points Docker at minikube's engine.

    minikube reads ``-o json`` only with ``--shell none`` (cmd/minikube/cmd/docker-env.go);
    without it, it prints shell ``export`` lines whatever ``-o`` says.
    """
    proc = _run(profile, "docker-env", "--shell", "none", "-o", "json")
    if proc.returncode != 0:
        output = proc.stderr or proc.stdout
        if "runtime" in output and "docker" in output:  # "only compatible with the docker runtime"
            raise _not_docker(profile, "docker-env refuses it")
        reason = output.strip().splitlines()
        raise IrisctlError(
            f"minikube docker-env failed: {reason[-1] if reason else proc.returncode}",
            f"is the cluster running? `minikube -p {profile} status`",
        )
    try:
        env = json.loads(proc.stdout)
    except ValueError:
        raise IrisctlError("minikube docker-env printed something that is not JSON") from None
    docker = {k: str(v) for k, v in env.items() if k.startswith("DOCKER_")}
    # A profile on containerd or cri-o: docker-env offers its node over ssh://, for which the
    # docker SDK would ask for paramiko, and there is no Docker engine there to build in anyway.
    if docker.get("DOCKER_HOST", "").startswith("ssh://"):
        raise _not_docker(profile, f"docker-env points at {docker['DOCKER_HOST']}")
    return docker


def _not_docker(profile: str, seen: str) -> IrisctlError:
    return IrisctlError(
        f"the minikube profile {profile} does not run Docker as its container runtime ({seen})",
        f"irisctl builds its images in minikube's Docker: `minikube delete -p {profile}` (it "
        "deletes that cluster's data), then `irisctl up` starts it with "
        "--container-runtime=docker; or use another profile (IRISCTL_MINIKUBE_PROFILE)",
    )
