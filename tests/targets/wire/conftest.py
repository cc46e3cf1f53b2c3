"""Fixtures that start the wire stand-ins: the API-server emulator (``apiserver``), a kubeconfig
naming it like a minikube profile (``kubeconfig``), the ``site`` every Kubernetes-target test
acts on, and helpers for real local servers; ``target()`` and ``up()`` for the tests."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from irisctl import images, settings
from irisctl.clients import docker as docker_client
from irisctl.targets.kube import KubeTarget
from tests.conftest import free_port

from . import minikube_stub as minikube_stub_module
from .apiserver import Emulator
from .docker_api import DockerApi
from .dockerd_tls import DOCKER_SOCKET, TlsDocker

PROFILE = "irisctl-test"
NS = "iris-mlops"
# app → every container port its manifest declares; the site's real HTTP server answers each.
PORTS = {
    "minio": (9000, 9001),
    "mlflow": (5000,),
    "model-api": (8080,),
    "monitor": (8001,),
    "prometheus": (9090,),
    "alertmanager": (9093,),
}


@pytest.fixture
def apiserver(tmp_path: Path) -> Iterator[Emulator]:
    """The API-server emulator on a free 127.0.0.1 port (https, its own CA)."""
    emu = Emulator(tmp_path / "apiserver-tls", terminate_s=1.0).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def kubeconfig(apiserver: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kubeconfig with one context named like the minikube profile; KUBECONFIG points at it."""
    path = apiserver.write_kubeconfig(tmp_path / "kubeconfig", PROFILE)
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        code = self.server.status_for.get(self.path, 200)  # type: ignore[attr-defined]
        body = f"{self.path} {code} from {self.server.server_address[1]}\n".encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class HttpServer:
    """A real HTTP server on a free port; ``status_for[path] = code`` changes its answers."""

    def __init__(self) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.status_for = {}  # type: ignore[attr-defined]
        self.status_for: dict[str, int] = self.server.status_for  # type: ignore[attr-defined]
        self.port = self.server.server_address[1]
        # shutdown() waits for the next poll: 0.5 s by default, in every test's teardown
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    server = HttpServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def tls_docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsDocker]:
    """minikube's dockerd stand-in: TLS with client certificates before the real engine."""
    if not Path(DOCKER_SOCKET).exists():
        pytest.skip("no Docker engine on this machine")
    docker = TlsDocker(tmp_path_factory.mktemp("minikube-certs")).start()
    try:
        yield docker
    finally:
        docker.stop()


@pytest.fixture
def minikube_stub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request) -> Path:
    """``minikube`` on PATH (profile ``irisctl-test`` running); returns its state directory.

    docker-env points at the TLS Docker endpoint when the test also uses ``tls_docker``.
    """
    env = (
        request.getfixturevalue("tls_docker").env()
        if "tls_docker" in request.fixturenames
        else {
            "DOCKER_TLS_VERIFY": "1",
            "DOCKER_HOST": "tcp://192.168.49.2:2376",
            "DOCKER_CERT_PATH": str(tmp_path / "certs"),
        }
    )
    state_dir = tmp_path / "minikube-state"
    bin_dir = tmp_path / "bin"
    minikube_stub_module.install(
        bin_dir, state_dir, minikube_stub_module.default_state(PROFILE, env, ip="127.0.0.1")
    )
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return state_dir


class Site:
    """What a Kubernetes-target test acts on: the emulator (``emu``), the HTTP server every
    pod answers from (``http``), ``IRISCTL_HOME`` (``home``), the minikube stub's state
    directory (``stub``), and the targets for which an image build was asked (``builds``)."""

    def __init__(self, emu: Emulator, http: HttpServer, home: Path, stub: Path) -> None:
        self.emu, self.http, self.home, self.stub = emu, http, home, stub
        self.builds: list[str] = []


@pytest.fixture
def site(
    apiserver: Emulator,
    kubeconfig: Path,
    minikube_stub: Path,
    http_server: HttpServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Site:
    """A running minikube profile whose API server is the emulator, every pod answering its
    probes from one real HTTP server, free local ports for the forwards; no image build."""
    monkeypatch.setenv("IRISCTL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("IRISCTL_MINIKUBE_PROFILE", PROFILE)
    for key in ("mlflow", "api", "monitor", "prometheus", "alertmanager"):
        monkeypatch.setenv(f"IRISCTL_{key.upper()}_PORT", str(free_port()))
    here = Site(apiserver, http_server, tmp_path / "home", minikube_stub)
    monkeypatch.setattr(
        images,
        "build_services_image",
        lambda config, target, base, on_line: (
            here.builds.append(target) or "irisctl-services:t",
            "stub",
            docker_client.Built("t", False, 1.0),
        ),
    )
    monkeypatch.setattr(KubeTarget, "poll_s", 0.1)
    for app, ports in PORTS.items():
        for port in ports:
            apiserver.serve(app, port, "127.0.0.1", http_server.port)
    return here


@pytest.fixture
def docker_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DockerApi]:
    """This machine's Docker engine is the Docker Engine API stand-in (docker_api.py); Docker's
    client config is an empty directory (no credentials, no credential helper)."""
    engine = DockerApi()
    monkeypatch.setenv("DOCKER_HOST", engine.host)
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    monkeypatch.delenv("DOCKER_CERT_PATH", raising=False)
    (tmp_path / "docker-config").mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    try:
        yield engine
    finally:
        engine.close()


def target(name: str = "minikube", **flags: object) -> KubeTarget:
    """A fresh target, as a later command would build it (no recorded place: flags only)."""
    config = settings.load({"target": name, "rollout_timeout": 20, **flags}, recorded=None)
    return KubeTarget(config, name)


def up(t: KubeTarget, forward: bool = False) -> list[tuple[str, str]]:
    """``t.up``, its progress as (step, what); no background port-forward unless ``forward``."""
    seen: list[tuple[str, str]] = []
    if not forward:
        t.start_forwarder = lambda: None  # type: ignore[method-assign]
    t.up(lambda step, what: seen.append((step, what)))
    return seen
