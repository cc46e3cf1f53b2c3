"""Reaching the services through the API server's port-forward: irisctl's ``Forward``
(irisctl/portforward.py), the opener that picks a pod, and the background ``irisctl
port-forward`` process, against the API-server emulator's pod portforward (a websocket piped to
a real local server) or, for ``Forward`` alone, a real TCP server standing in for a pod's port.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from irisctl import state
from irisctl.errors import IrisctlError
from irisctl.portforward import Forward
from irisctl.targets.kube import manifests
from irisctl.targets.kube.objects import pod_ready
from tests.conftest import free_port, wait_until

from .conftest import NS, HttpServer, target, up


def test_every_one_of_many_concurrent_connections_through_the_forward_works(site):
    up(target())
    t = target()
    errors: list[str] = []
    forwards = t.forward(errors.append)
    try:
        url = f"http://127.0.0.1:{t.forwarder.local_port('model-api')}/healthz"

        def get(_: int) -> int:
            return httpx.get(url, timeout=30).status_code

        with ThreadPoolExecutor(40) as pool:
            codes = list(pool.map(get, range(40)))
        assert codes == [200] * 40, errors
        # and the REST calls made meanwhile still work
        assert t.cluster().find("v1", "Pod", "app.kubernetes.io/name=model-api")
    finally:
        for f in forwards:
            f.stop()


def test_the_forward_logs_the_kubelets_error(site):
    up(target())
    t = target()
    site.emu.serve("monitor", 8001, "127.0.0.1", free_port())  # nothing listens there
    errors: list[str] = []
    forwards = t.forward(errors.append)
    try:
        port = t.forwarder.local_port("monitor")
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        wait_until(lambda: errors, 10, 0.1, "the forwarder to report the kubelet's error")
        assert "connection refused" in errors[0]
    finally:
        for f in forwards:
            f.stop()


def test_mlflow_accepts_the_forwards_host_header_whatever_the_local_port():
    from mlflow.server.security_utils import is_allowed_host_header

    docs = manifests.documents(target().render())
    mlflow = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "mlflow"
    )
    args = mlflow["spec"]["template"]["spec"]["containers"][0]["args"]
    allowed = next(a for a in args if a.startswith("--allowed-hosts=")).split("=", 1)[1]
    hosts = allowed.split(",")
    for host in ("localhost:15000", "127.0.0.1:15000", "localhost:5000", "mlflow-service:5000"):
        assert is_allowed_host_header(hosts, host), host
    assert not is_allowed_host_header(hosts, "evil.example:5000")


def test_stopping_the_forwarder_returns_once_it_has_exited_and_its_ports_are_free(site):
    from irisctl.targets.kube.forwarding import _running

    up(target())
    t = target()
    t.start_forwarder()
    pid = t.forwarder.pid()
    assert pid is not None
    assert t.stop_forwarder()
    assert not _running(pid)
    t.start_forwarder()  # at once: the ports are free again
    assert t.forwarder.alive()
    t.stop_forwarder()


def test_ports_free_after_the_forward_stops_quickly():
    """_running tells an exited (zombie) child from a live process."""
    from irisctl.targets.kube.forwarding import _running

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while _running(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(proc.pid)
    proc.wait()


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
    """The 'pod stream' is a real TCP connection to a local server."""
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


def test_the_opener_streams_to_a_ready_pod_before_a_newer_unready_one(site):
    """A rollout whose new pod is not ready yet: connections go to the old, ready pod, not to
    the newest (``kubectl port-forward`` would take any running pod)."""
    up(target())
    emu = site.emu
    (old,) = emu.list("Pod", NS, "app.kubernetes.io/name=model-api")
    name = old["metadata"]["name"]
    emu.serve_pod(NS, name, 8080, ("127.0.0.1", site.http.port))  # the old pod keeps its server

    def made_earlier() -> None:  # a rollout a second later: creationTimestamps differ
        emu.objects[("Pod", NS, name)]["metadata"]["creationTimestamp"] = "2020-01-01T00:00:00Z"

    emu.call(made_earlier)
    unready = HttpServer()  # the new pod's server: alive, not ready
    unready.status_for["/readyz"] = 503
    try:
        emu.serve("model-api", 8080, "127.0.0.1", unready.port)
        t = target()
        docs = t.documents()
        (api,) = [
            d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "model-api"
        ]
        api["spec"]["template"]["metadata"].setdefault("annotations", {})["rollout"] = "2"
        t.cluster().apply(api)
        pods = wait_until(
            lambda: [
                p for p in emu.list("Pod", NS, "app.kubernetes.io/name=model-api")
                if p["metadata"]["name"] != name and p["status"]["phase"] == "Running"
            ],
            10,
            0.05,
            "the rollout's new pod",
        )  # fmt: skip
        assert not pod_ready(pods[0])
        fwd = Forward(0, t.opener("model-api")).start()
        try:
            said = httpx.get(f"http://127.0.0.1:{fwd.port}/healthz", timeout=10).text
        finally:
            fwd.stop()
        assert said == f"/healthz 200 from {site.http.port}\n"
    finally:
        unready.close()


def test_the_background_port_forward_reports_why_it_could_not_start(tmp_path, monkeypatch):
    """The spawned `irisctl port-forward` meets an API server that refuses connections
    (127.0.0.1:1), exits, and `up`'s caller gets its reason."""
    import yaml

    home = tmp_path / "home"
    monkeypatch.setenv("IRISCTL_HOME", str(home))
    kubeconfig = tmp_path / "refusing"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "dev",
                "clusters": [{"name": "dev", "cluster": {"server": "https://127.0.0.1:1"}}],
                "contexts": [{"name": "dev", "context": {"cluster": "dev", "user": "u"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
            }
        )
    )
    ports = {f"{k}_port": free_port() for k in ("mlflow", "api", "monitor", "prometheus")}
    t = target("kubernetes", context="dev", kubeconfig=str(kubeconfig), **ports)
    with pytest.raises(IrisctlError) as err:
        t.start_forwarder()
    assert "the port-forward did not start" in err.value.message
    assert "not reachable" in err.value.message or "127.0.0.1:1" in err.value.message
    pid = state.read(home)["forwarder_pid"]
    assert isinstance(pid, int) and t.forwarder.pid() is None  # it exited; nothing left
