"""What a user is told when minikube or Docker is set up otherwise than irisctl expects: the
``minikube`` stub (minikube_stub.py, minikube's words per cmd/minikube/cmd/start.go and
docker-env.go) and the real Docker engine with a credential helper that is not installed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from irisctl.clients import docker as docker_client
from irisctl.clients import minikube
from irisctl.errors import IrisctlError

from . import minikube_stub as stub
from .conftest import PROFILE
from .dockerd_tls import DOCKER_SOCKET


def test_minikube_is_started_with_the_docker_container_runtime(minikube_stub):
    minikube.start(PROFILE, 2, 4096, lambda line: None)
    start = next(line for line in stub.argv_log(minikube_stub) if " start" in line)
    assert "--container-runtime=docker" in start


@pytest.mark.parametrize(
    ("reason", "fix"),
    [
        ("GUEST_DRIVER_MISMATCH", f"minikube delete -p {PROFILE}"),
        ("RSRC_OVER_ALLOC_MEM", "IRISCTL_MINIKUBE_MEMORY_MB"),
    ],
)
def test_minikube_start_failures_name_their_fix(minikube_stub, reason, fix):
    state = stub.load(minikube_stub)
    state["start_fails"] = reason
    stub.save(minikube_stub, state)
    with pytest.raises(IrisctlError) as err:
        minikube.start(PROFILE, 2, 4096, lambda line: None)
    assert reason in err.value.message and fix in (err.value.hint or "")


def test_a_profile_on_containerd_is_named_not_a_missing_paramiko(minikube_stub):
    """docker-env on a containerd profile offers ssh://; the docker SDK then asked for paramiko."""
    state = stub.load(minikube_stub)
    state["docker_env"] = {"DOCKER_HOST": "ssh://docker@127.0.0.1:32772"}
    stub.save(minikube_stub, state)
    with pytest.raises(IrisctlError) as err:
        minikube.docker_env(PROFILE)
    assert "does not run Docker as its container runtime" in err.value.message
    assert "--container-runtime=docker" in (err.value.hint or "")


def test_a_credential_helper_missing_from_path_is_one_clear_line(tmp_path: Path, monkeypatch):
    """~/.docker/config.json names "credsStore": docker-py runs docker-credential-NAME for every
    build (docker/api/build.py _set_auth_headers → credentials/store.py) and raised StoreError
    as a traceback when it is not on PATH."""
    if not Path(DOCKER_SOCKET).exists():
        pytest.skip("no Docker engine on this machine")
    config = tmp_path / "docker-config"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"credsStore": "irisctl-test-missing"}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    with pytest.raises(IrisctlError) as err, pytest.warns(UserWarning, match="not installed"):
        docker_client.build(
            docker_client.client(), {"Dockerfile": dockerfile}, "irisctl-never:x", {}, print
        )
    assert "credential helper" in err.value.message
    assert os.fspath(config / "config.json") in (err.value.hint or "")
