"""The minikube stub and the TLS Docker endpoint, checked against what irisctl's clients read."""

from __future__ import annotations

import json
import subprocess

import pytest

from irisctl.clients import minikube

from . import minikube_stub
from .conftest import PROFILE
from .minikube_stub import argv_log


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["minikube", *args], capture_output=True, text=True, timeout=30)


def test_docker_env_prints_json_only_with_shell_none(minikube_stub):
    shell = run("-p", PROFILE, "docker-env", "-o", "json")
    assert shell.returncode == 0
    assert shell.stdout.startswith('export DOCKER_TLS_VERIFY="1"\n')
    with pytest.raises(ValueError):
        json.loads(shell.stdout)
    as_json = json.loads(run("-p", PROFILE, "docker-env", "--shell", "none", "-o", "json").stdout)
    assert set(as_json) == {
        "DOCKER_TLS_VERIFY",
        "DOCKER_HOST",
        "DOCKER_CERT_PATH",
        "MINIKUBE_ACTIVE_DOCKERD",
    }


def test_docker_env_is_read_as_json_from_minikube(minikube_stub):
    """minikube prints JSON only with --shell none; otherwise `export` lines."""
    env = minikube.docker_env(PROFILE)
    assert env["DOCKER_HOST"] and env["DOCKER_TLS_VERIFY"] == "1"
    assert any("--shell none" in line for line in argv_log(minikube_stub))


def test_status_start_stop_and_reason_codes(minikube_stub):
    status = run("-p", PROFILE, "status", "-o", "json")
    assert (status.returncode, json.loads(status.stdout)["APIServer"]) == (0, "Running")
    assert run("-p", PROFILE, "stop").returncode == 0
    stopped = run("-p", PROFILE, "status", "-o", "json")
    assert (stopped.returncode, json.loads(stopped.stdout)["Host"]) == (7, "Stopped")
    assert run("-p", "other", "status", "-o", "json").returncode == 85
    s = minikube_stub_state(minikube_stub)
    s["start_fails"] = "PROVIDER_DOCKER_NOT_RUNNING"
    minikube_stub_save(minikube_stub, s)
    failed = run("-p", PROFILE, "start", "--driver=docker")
    assert failed.returncode == 69
    assert "Exiting due to PROVIDER_DOCKER_NOT_RUNNING" in failed.stderr
    s["start_fails"] = ""
    minikube_stub_save(minikube_stub, s)
    assert run("-p", PROFILE, "start", "--driver=docker").returncode == 0
    assert run("-p", PROFILE, "ip").stdout == "127.0.0.1\n"


def test_addons_list_and_enable(minikube_stub):
    listed = json.loads(run("-p", PROFILE, "addons", "list", "-o", "json").stdout)
    assert listed["ingress"] == {"Profile": PROFILE, "Status": "disabled"}
    assert run("-p", PROFILE, "addons", "enable", "ingress").returncode == 0
    listed = json.loads(run("-p", PROFILE, "addons", "list", "-o", "json").stdout)
    assert listed["ingress"]["Status"] == "enabled"


def minikube_stub_state(state_dir):
    return minikube_stub.load(state_dir)


def minikube_stub_save(state_dir, state):
    minikube_stub.save(state_dir, state)


def test_the_tls_docker_endpoint_needs_a_client_certificate(tls_docker, monkeypatch):
    import docker
    import requests

    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override the SDK's DOCKER_CERT_PATH CA
    # (psf/requests#3829); set on this machine, they would fail every TLS engine: see
    # test_irisctl_reaches_minikubes_docker_despite_a_ca_bundle_in_the_environment.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)

    engine = docker.from_env(environment=tls_docker.env(), timeout=30)
    assert engine.ping()
    assert engine.version()["ApiVersion"]
    with pytest.raises(requests.exceptions.RequestException):  # no client certificate
        requests.get(
            f"https://127.0.0.1:{tls_docker.port}/_ping",
            verify=str(tls_docker.cert_dir / "ca.pem"),
            timeout=10,
        )


def test_irisctl_reaches_minikubes_docker_despite_a_ca_bundle_in_the_environment(
    tls_docker, monkeypatch
):
    """Users behind corporate proxies set REQUESTS_CA_BUNDLE; the Docker SDK (a requests
    Session) then verifies minikube's dockerd against that bundle instead of ca.pem."""
    from irisctl.clients import docker as docker_client

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    engine = docker_client.client(tls_docker.env())
    assert engine.ping()
