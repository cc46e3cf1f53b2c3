"""The Kubernetes targets' orchestration at the kubernetes-client and subprocess boundary, for
what the wire stand-ins (tests/targets/wire/) cannot yet show: crash loops, image pulls, restarts.

None of these tests talks to a cluster (none can run here, see DESIGN.md): the kubernetes
client is replaced by the recording fakes in ``fake_kube`` and ``minikube`` by a shell stub on
PATH that logs its argv. What they prove is irisctl's side: what it applies, in which order,
with which field manager, what it waits for and reports, how it creates training Jobs, what it
deletes, and that it refuses to act on a context the user did not choose.
"""

from __future__ import annotations

import socket
import threading

import pytest

from irisctl import ops, settings, state
from irisctl.clients import docker as docker_client
from irisctl.clients import minikube
from irisctl.errors import BadInput, IrisctlError
from irisctl.portforward import Forward
from irisctl.targets import kube
from irisctl.targets.kube import KubeTarget

from .fake_kube import (
    fake_cluster,
    path_with,
    pod,
    stub_binary,
    stub_minikube,
    write_kubeconfig,
)

MINIKUBE_SERVER = "https://192.168.49.2:8443"
REAL_BUILD = kube.build_services_image  # the env fixture replaces these two
REAL_START_FORWARDER = KubeTarget.start_forwarder


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A home, a kubeconfig (minikube + a foreign "prod"), stubs on PATH, no real Docker build."""
    home = tmp_path / "home"
    bin_dir = tmp_path / "bin"
    kubeconfig = write_kubeconfig(
        tmp_path / "kubeconfig",
        {"minikube": MINIKUBE_SERVER, "prod": "https://10.20.30.40:6443"},
        current="prod",
    )
    stub_minikube(bin_dir)
    stub_binary(bin_dir, "kubectl", "exit 0")
    stub_binary(bin_dir, "docker", "exit 0")
    monkeypatch.setenv("PATH", path_with(bin_dir))
    monkeypatch.setenv("IRISCTL_HOME", str(home))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    builds = []
    monkeypatch.setattr(docker_client, "client", lambda environment=None: object())
    monkeypatch.setattr(
        kube.images,
        "build_services_image",
        lambda config, target, base, on_line: (
            builds.append(target) or f"irisctl-services:{kube.services_image_tag()}",
            "fake engine",
            docker_client.Built("t", False, 1.0),
        ),
    )
    monkeypatch.setattr(KubeTarget, "start_forwarder", lambda self: None)
    monkeypatch.setattr(KubeTarget, "poll_s", 0.01)
    return type("Env", (), {"home": home, "bin": bin_dir, "builds": builds, "tmp": tmp_path})


def target(name="minikube", cluster=None, **flags) -> KubeTarget:
    config = settings.load({"target": name, **flags}, recorded=None)
    return KubeTarget(config, name, cluster if cluster is not None else fake_cluster())


def argv_log(env, name="minikube") -> list[str]:
    path = env.bin / f"{name}.log"
    return path.read_text().splitlines() if path.exists() else []


def progress_recorder():
    seen: list[tuple[str, str]] = []
    return seen, lambda step, state_: seen.append((step, state_))


# -- up ----------------------------------------------------------------------------------------


# -- safety: the context, minikube and Docker (RELIABILITY.md F1-F3) ---------------------------


def test_f1_no_minikube_is_a_clear_error_and_nothing_runs(env, tmp_path, monkeypatch):
    """Not a cluster: no minikube on PATH; the kubectl/docker stubs and the fake stay untouched."""
    (env.bin / "minikube").unlink()
    docker_calls = []
    monkeypatch.setattr(docker_client, "client", lambda environment=None: docker_calls.append(1))
    t = target()
    with pytest.raises(IrisctlError) as err:
        t.up(lambda *a: None)
    assert "minikube" in err.value.message and "install" in (err.value.hint or "")
    assert t.cluster().dynamic.calls == [] and docker_calls == []
    assert argv_log(env, "kubectl") == [] and argv_log(env, "docker") == []
    assert state.read(env.home) is None


def test_f2_docker_not_running_surfaces_minikube_reason_and_changes_nothing(env):
    """Not a cluster: the minikube stub fails `start` with PROVIDER_DOCKER_NOT_RUNNING."""
    stub_minikube(env.bin, running=False, start_fails="PROVIDER_DOCKER_NOT_RUNNING")
    t = target()
    with pytest.raises(IrisctlError) as err:
        t.up(lambda *a: None)
    assert "PROVIDER_DOCKER_NOT_RUNNING" in err.value.message and "Docker" in err.value.hint
    assert t.cluster().dynamic.mutations() == []
    assert state.read(env.home) is None


@pytest.mark.parametrize(
    "contexts, expected",
    [
        ({"minikube": "https://10.20.30.40:6443"}, "not minikube profile"),  # foreign server
        ({"prod": "https://10.20.30.40:6443"}, "not in"),  # no minikube context at all
    ],
)
def test_f3_minikube_refuses_a_context_that_is_not_its_cluster(env, contexts, expected):
    """Not a cluster: the kubeconfig is a file; the real Cluster.connect would be next."""
    write_kubeconfig(env.tmp / "kubeconfig", contexts, current="prod")
    config = settings.load({"target": "minikube"})
    t = KubeTarget(config, "minikube")  # no fake: connecting would need a cluster
    with pytest.raises(IrisctlError) as err:
        t.up(lambda *a: None)
    assert expected in err.value.message
    assert t._cluster is None  # never connected, so nothing was sent anywhere
    assert state.read(env.home) is None


def test_f3_the_kubernetes_target_never_uses_the_current_context(env):
    """Not a cluster: without --context it refuses and lists the contexts."""
    t = KubeTarget(settings.load({"target": "kubernetes", "registry": "r.example/x"}), "kubernetes")
    with pytest.raises(BadInput) as err:
        t.up(lambda *a: None)
    assert "--context" in err.value.hint and "current-context 'prod'" in err.value.hint
    assert t._cluster is None


def test_f3_an_empty_kubeconfig_is_refused(env, tmp_path):
    """Not a cluster: an empty kubeconfig would make a client dial localhost:8080."""
    empty = tmp_path / "empty"
    empty.write_text("")
    t = KubeTarget(
        settings.load({"target": "kubernetes", "context": "prod", "kubeconfig": str(empty)}),
        "kubernetes",
    )
    with pytest.raises(IrisctlError) as err:
        t.context()
    assert "no contexts" in err.value.message


def test_the_kubernetes_target_needs_a_registry(env):
    t = target("kubernetes", context="prod")
    with pytest.raises(BadInput) as err:
        t.up(lambda *a: None)
    assert "--registry" in err.value.message
    assert t.cluster().dynamic.calls == []


def test_the_minikube_target_refuses_another_context_name(env):
    with pytest.raises(BadInput):
        target(context="prod").context()


# -- train --now -------------------------------------------------------------------------------


def _up(env, **flags):
    t = target(**flags)
    t.up(lambda *a: None)
    return t


# -- status, logs, secrets ---------------------------------------------------------------------


def test_show_secrets_reads_the_secret(env):
    """Not a cluster."""
    t = _up(env)
    assert (
        t.secrets()["minio-root-password"]
        == t.cluster().secret("iris-credentials")["minio-root-password"]
    )


# -- down --------------------------------------------------------------------------------------


def test_down_purge_deletes_the_namespace_and_cluster_stops_minikube(env):
    """Not a cluster: minikube is the stub."""
    t = _up(env)
    done = t.down(purge=True, cluster=True)
    assert ("Namespace", "iris-mlops") not in t.cluster().dynamic.objects
    assert "-p minikube stop" in argv_log(env)
    assert "stopped minikube profile minikube" in done
    assert state.read(env.home) is None


def test_cluster_flag_is_only_for_minikube(env):
    with pytest.raises(BadInput):
        target("kubernetes", context="prod").down(purge=False, cluster=True)


def test_later_commands_act_on_the_recorded_cluster(env, monkeypatch):
    """Not a cluster: `up` recorded the place; a later config (no flags) resolves to it."""
    monkeypatch.delenv("KUBECONFIG")
    t = target(
        "kubernetes",
        context="prod",
        registry="r.example/team",
        namespace="ml",
        kubeconfig=str(env.tmp / "kubeconfig"),
    )
    t._record(up=True)
    later = settings.load({}, recorded=state.read(env.home))
    assert (later["context"], later["namespace"], later["registry"]) == (
        "prod",
        "ml",
        "r.example/team",
    )
    assert later["kubeconfig"] == str(env.tmp / "kubeconfig")
    chosen, _ = ops._current(later)
    assert chosen.name == "kubernetes"


# -- port-forward ------------------------------------------------------------------------------


@pytest.fixture
def echo_server():
    """A real TCP server standing in for a pod's port: answers each line in upper case."""
    srv = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(conn.recv(1024).upper())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    stop.set()
    thread.join(2)
    srv.close()


def _ask(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        return s.recv(1024)


def test_forward_carries_bytes_and_reconnects_per_connection(echo_server):
    """Not a cluster: the 'pod stream' is a real TCP connection to a local server."""
    opened = []

    def open_remote():
        opened.append(1)
        if len(opened) == 2:
            raise OSError("pod gone")  # a dropped pod: the next attempt finds a fresh one
        return socket.create_connection(("127.0.0.1", echo_server))

    fwd = Forward(0, open_remote).start()
    try:
        assert _ask(fwd.port, b"hello") == b"HELLO"
        assert _ask(fwd.port, b"again") == b"AGAIN"  # 2nd open failed, 3rd served
        assert len(opened) == 3
    finally:
        fwd.stop()


def test_forward_reports_when_no_pod_can_be_reached():
    errors = []

    def never():
        raise OSError("no ready pod")

    fwd = Forward(0, never, errors.append, attempts=2).start()
    try:
        with socket.create_connection(("127.0.0.1", fwd.port), timeout=5) as s:
            assert s.recv(10) == b""  # closed, not hung
        assert errors and "no ready pod" in errors[0]
    finally:
        fwd.stop()


def test_opener_streams_to_the_newest_ready_pod(env, monkeypatch):
    """Not a cluster: Cluster.open_port (the API server's port-forward) is replaced."""
    t = _up(env)
    fake = t.cluster().dynamic
    fake.put(pod("model-api-old", {"app.kubernetes.io/name": "model-api"}, ready=False))
    opened = []
    monkeypatch.setattr(t.cluster(), "open_port", lambda p, port: opened.append((p, port)))
    t.opener("model-api")()
    assert opened == [("model-api-abc12", 8080)]


def test_minikube_docker_env_and_status_parsing(env):
    """Not minikube: the stub answers as minikube does."""
    assert minikube.docker_env("minikube")["DOCKER_HOST"] == "tcp://192.168.49.2:2376"
    assert minikube.running("minikube")
    assert minikube.is_its_server("minikube", MINIKUBE_SERVER)
    assert not minikube.is_its_server("minikube", "https://10.20.30.40:6443")
    assert all(c.startswith("-p minikube ") for c in argv_log(env))


class _FakeEngine:
    """Not a Docker engine: records pushes and answers with the SDK's decoded stream."""

    def __init__(self, error: str = "") -> None:
        self.pushed: list[tuple[str, str]] = []
        self.error = error
        self.api = self

    def push(self, repository, tag=None, stream=False, decode=False):
        self.pushed.append((repository, tag))
        yield {"status": "The push refers to repository [" + repository + "]"}
        yield {"status": "Pushing", "id": "abc", "progress": "[==>  ]"}
        if self.error:
            yield {"error": self.error}
        else:
            yield {"status": f"{tag}: digest: sha256:0123 size: 1234"}


def test_the_kubernetes_target_builds_here_and_pushes_to_its_registry(env, monkeypatch):
    """Not a registry: the engine is a fake at the docker SDK boundary; `build` is replaced."""
    engine = _FakeEngine()
    monkeypatch.setattr(docker_client, "client", lambda environment=None: engine)
    monkeypatch.setattr(
        docker_client,
        "build",
        lambda e, files, tag, args, on_line: docker_client.Built(tag, True, 1),
    )
    config = settings.load({"target": "kubernetes", "registry": "registry.example/team/"})
    lines = []
    tag, where, _ = REAL_BUILD(config, "kubernetes", None, lines.append)
    assert tag == f"registry.example/team/irisctl-services:{kube.services_image_tag()}"
    assert engine.pushed == [
        ("registry.example/team/irisctl-services", kube.services_image_tag()),
        ("registry.example/team/irisctl-model-api", kube.services_image_tag("model-api")),
    ]
    assert any("digest" in line for line in lines) and where == "the local Docker engine"


def test_a_refused_push_is_a_clear_error(env, monkeypatch):
    """Not a registry: the fake engine answers the push with the error a registry gives."""
    engine = _FakeEngine(error="denied: requested access to the resource is denied")
    with pytest.raises(IrisctlError) as err:
        docker_client.push(engine, "registry.example/team/irisctl-services:abc", lambda line: None)
    assert "denied" in err.value.message and "docker login" in err.value.hint


def test_the_background_port_forward_reports_why_it_could_not_start(env, tmp_path):
    """Not a cluster: the spawned `irisctl port-forward` meets an API server that refuses
    connections (127.0.0.1:1), exits, and `up`'s caller gets its reason."""
    from tests.conftest import free_port

    kubeconfig = write_kubeconfig(tmp_path / "refusing", {"dev": "https://127.0.0.1:1"}, "dev")
    ports = {f"{k}_port": free_port() for k in ("mlflow", "api", "monitor", "prometheus")}
    t = KubeTarget(
        settings.load(
            {"target": "kubernetes", "context": "dev", "kubeconfig": str(kubeconfig), **ports}
        ),
        "kubernetes",
    )
    with pytest.raises(IrisctlError) as err:
        REAL_START_FORWARDER(t)
    assert "the port-forward did not start" in err.value.message
    assert "not reachable" in err.value.message or "127.0.0.1:1" in err.value.message
    pid = state.read(env.home)["forwarder_pid"]
    assert isinstance(pid, int) and t.forwarder.pid() is None  # it exited; nothing left
