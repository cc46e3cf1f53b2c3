"""``irisctl --target minikube`` end to end against the wire stand-ins: the real CLI, the real
kubernetes client and kubectl over HTTPS to the API-server emulator, the minikube stub, the
services image really built through the TLS Docker endpoint, and every pod a real local
process (tests/targets/wire/kubelet.py): MLflow, the model API, monitor, trainer, Prometheus,
Alertmanager and S3 (moto in MinIO's place). Only the kubelet and the container runtime are
stood in for.

The model API runs as two replicas throughout (issue 19): both serve the champion and swap on a
promotion, ``status`` says 2/2, Prometheus scrapes each pod (the headless Service's records, as
the stand-in answers them for CoreDNS), and a rollout under in-cluster traffic through the
Service (kube-proxy's random choice, and its lag behind a deleted pod) drops no request.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from iris_services.common.feedback_store import FeedbackStore
from tests.conftest import free_port, stop_group, wait_until

from . import minikube_stub
from .apiserver import Emulator
from .conftest import PROFILE
from .dockerd_tls import TlsDocker
from .kubelet import LocalKubelet

pytestmark = pytest.mark.e2e
NS = "iris-mlops"
TRANSCRIPT = Path(os.environ.get("IRISCTL_WIRE_TRANSCRIPT", "/tmp/irisctl-wire-e2e.txt"))


class World:
    """Everything a user's machine would have, stood in for; ``irisctl(...)`` runs the CLI."""

    def __init__(self, root: Path, docker: TlsDocker) -> None:
        self.root = root
        self.home = root / "home"
        self.emu = Emulator(root / "apiserver-tls", terminate_s=3.0).start()
        self.kubeconfig = self.emu.write_kubeconfig(root / "kubeconfig", PROFILE)
        self.kubelet = LocalKubelet(self.emu, root / "node")
        self.state_dir = root / "minikube-state"
        minikube_stub.install(
            root / "bin",
            self.state_dir,
            minikube_stub.default_state(PROFILE, docker.env(), ip="127.0.0.1"),
        )
        mlflow_port = 15000 if _port_free(15000) else free_port()
        self.ports = {
            "mlflow": mlflow_port,
            "api": free_port(),
            "monitor": free_port(),
            "prometheus": free_port(),
            "alertmanager": free_port(),
        }
        self.env = {
            **os.environ,
            "PATH": f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "KUBECONFIG": str(self.kubeconfig),
            "IRISCTL_HOME": str(self.home),
            "IRISCTL_MINIKUBE_PROFILE": PROFILE,
            **{f"IRISCTL_{k.upper()}_PORT": str(v) for k, v in self.ports.items()},
            "IRISCTL_API_REPLICAS": "2",
            # Every training replaces the champion, so the test sees both pods swap.
            "IRISCTL_PROMOTION_TOLERANCE": "1.0",
            "NO_COLOR": "1",
            "COLUMNS": "120",
        }
        self.log = TRANSCRIPT.open("w")

    def irisctl(self, *args: str, timeout: float = 900, check: bool = True, **kw):
        argv = ["irisctl", "--target", "minikube", *args]
        self.log.write(f"\n$ {' '.join(argv)}\n")
        self.log.flush()
        started = time.monotonic()
        out_path, err_path = self.root / "last.out", self.root / "last.err"
        with out_path.open("w") as out, err_path.open("w") as err:  # tail -f them to watch
            code = subprocess.run(
                [sys.executable, "-m", "irisctl", *argv[1:]],
                env=self.env,
                stdout=out,
                stderr=err,
                text=True,
                timeout=timeout,
                **kw,
            ).returncode
        proc = subprocess.CompletedProcess(argv, code, out_path.read_text(), err_path.read_text())
        self.log.write(proc.stdout + proc.stderr)
        self.log.write(f"[exit {proc.returncode}, {time.monotonic() - started:.1f}s]\n")
        self.log.flush()
        if check:
            assert proc.returncode == 0, f"{argv}: {proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        return proc

    def kubectl(self, *args: str, **kw) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), "--context", PROFILE, *args],
            capture_output=True,
            text=True,
            timeout=120,
            **kw,
        )
        self.log.write(f"\n$ kubectl {' '.join(args)}\n{proc.stdout}{proc.stderr}")
        return proc

    def documents(self) -> list[dict]:
        import yaml

        rendered = self.irisctl("render").stdout
        return [d for d in yaml.safe_load_all(rendered) if d]

    def close(self) -> None:
        from irisctl import state

        pid = (state.read(self.home) or {}).get("forwarder_pid")
        if isinstance(pid, int):
            stop_group(pid)
        self.kubelet.stop()
        self.emu.stop()
        self.log.close()


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def world(tmp_path_factory, tls_docker, base_image):
    w = World(tmp_path_factory.mktemp("wire-e2e"), tls_docker)
    # The services image, really built in "minikube's Docker" (through TLS) once; `up` finds it.
    w.irisctl("build", "--base-image", base_image, timeout=2400)
    assert tls_docker.connections > 0
    yield w
    w.close()


@pytest.mark.timeout(3600)
def test_up_predict_train_status_logs_up_down_purge_up(world):
    """Issue 11's "done when", with --mlflow-port 15000 (a free port if 15000 is taken)."""
    w = world
    mlflow = ["--mlflow-port", str(w.ports["mlflow"])]
    w.irisctl("up", *mlflow, timeout=1200)

    # kubectl, a second client, sees what `up` applied; the render is one stream of the same
    # objects and the API server accepts it (server-side dry run: the namespace exists now).
    got = json.loads(w.kubectl("get", "deploy,cronjob", "-n", NS, "-o", "json").stdout)
    assert {d["metadata"]["name"] for d in got["items"]} >= {
        "mlflow",
        "model-api",
        "monitor",
        "prometheus",
        "alertmanager",
        "ml-model-training",
    }
    rendered = w.irisctl("render").stdout
    dry = w.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("(server dry run)") == len(w.documents()), dry.stdout

    assert _predicted(w) == "setosa"
    # 20 concurrent requests through the port-forward: every one answered.
    url = f"http://127.0.0.1:{w.ports['api']}/predict"

    def ask(_: int) -> int:
        return httpx.post(url, json={"features": [5.1, 3.5, 1.4, 0.2]}, timeout=60).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(ask, range(20)))
    assert codes == [200] * 20, codes
    w.log.write(f"\n20 concurrent POST /predict through the forward: {codes}\n")
    # MLflow through the forward on a local port that is not 5000 (Host: 127.0.0.1:15000).
    r = httpx.post(
        f"http://127.0.0.1:{w.ports['mlflow']}/api/2.0/mlflow/experiments/search",
        json={"max_results": 5},
        timeout=30,
    )
    assert r.status_code == 200, r.text[:300]

    before = _served_versions(w)
    assert len(before) == 2 and len(set(before.values())) == 1, before
    trained = w.irisctl("train", "--now", timeout=900)
    assert "accuracy" in trained.stdout + trained.stderr
    status = w.irisctl("status")
    assert "Champion: iris-classifier" in status.stdout
    _both_replicas_swap_and_are_scraped(w, before)
    logs = w.irisctl("logs", "model-api")
    assert "serving version" in logs.stdout
    _feedback_survives_an_api_pod_restart(w)

    # again, on the running stack, with a setting the API reads at start: its pods roll while
    # in-cluster traffic goes through the Service, and not one request fails
    _rollout_under_traffic(w, lambda: w.irisctl("up", *mlflow, timeout=900))
    w.irisctl("down", "--purge", "--yes", timeout=600)
    assert NS not in {n["metadata"]["name"] for n in w.emu.list("Namespace")}
    w.irisctl("up", *mlflow, timeout=1200)  # right after the purge: no 403
    assert _predicted(w) == "setosa"


def _served_versions(w: World) -> dict[str, str]:
    """pod → the version its own /model reports (each pod asked directly, not via a Service)."""
    out = {}
    for pod in w.emu.list("Pod", NS, "app.kubernetes.io/name=model-api"):
        port = w.kubelet.pod_ports[(NS, pod["metadata"]["name"], 8080)]
        out[pod["metadata"]["name"]] = httpx.get(
            f"http://127.0.0.1:{port}/model", timeout=10
        ).json()["version"]
    return out


def _both_replicas_swap_and_are_scraped(w: World, before: dict[str, str]) -> None:
    """Both pods serve the promoted champion; `status` shows 2/2; Prometheus has a target per
    pod, both up (through a ClusterIP it had one target, each scrape a random replica)."""
    old = next(iter(before.values()))
    wait_until(
        lambda: len(v := _served_versions(w)) == 2 and old not in v.values(),
        60,
        0.5,
        lambda: f"both replicas to swap from v{old}: {_served_versions(w)}",
    )
    api = json.loads(w.irisctl("status", "--json", check=False).stdout)["services"]["model-api"]
    assert api["detail"].startswith("2/2 ready"), api
    prometheus = f"http://127.0.0.1:{w.ports['prometheus']}"

    def scraped() -> list[dict]:
        targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()["data"]
        mine = [t for t in targets["activeTargets"] if t["labels"]["job"] == "iris-model-api"]
        return mine if len(mine) == 2 and all(t["health"] == "up" for t in mine) else []

    wait_until(scraped, 60, 1.0, "Prometheus to scrape both model-API pods")
    w.log.write(f"\nboth replicas after the promotion: {_served_versions(w)}\n")


def _rollout_under_traffic(w: World, roll) -> None:
    """``roll()`` replaces both API pods (a new setting) while 4 threads predict through
    model-api-service in the cluster: every request is answered 200."""
    old = {p["metadata"]["uid"] for p in w.emu.list("Pod", NS, "app.kubernetes.io/name=model-api")}
    proxy = w.kubelet.service_port(NS, "model-api-service", 8080)
    url = f"http://127.0.0.1:{proxy}/predict"
    stop, outcomes = threading.Event(), []

    def ask() -> None:
        while not stop.is_set():
            try:  # a new connection each time: each is one of kube-proxy's random choices
                code = httpx.post(url, json={"features": [5.1, 3.5, 1.4, 0.2]}, timeout=30)
                outcomes.append(code.status_code)
            except httpx.HTTPError as exc:
                outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        w.env["IRISCTL_DRIFT_MIN_ROWS"] = "400"  # the API's settings change: its pods roll
        roll()

        def replaced() -> bool:
            pods = w.emu.list("Pod", NS, "app.kubernetes.io/name=model-api")
            return len(pods) == 2 and not old & {p["metadata"]["uid"] for p in pods}

        wait_until(replaced, 120, 0.5, "both model-API pods to be replaced")
        # the old pods' preStop pause and shutdown, still under traffic
        wait_until(
            lambda: not any(t.is_alive() for t in w.kubelet.stopping), 60, 0.5, "old pods to stop"
        )
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        w.env.pop("IRISCTL_DRIFT_MIN_ROWS")
    failed = [o for o in outcomes if o != 200]
    w.log.write(f"\nrollout under traffic: {len(outcomes)} requests, failed: {failed[:20]}\n")
    assert len(outcomes) > 50 and not failed, (len(outcomes), failed[:20])


def _feedback_survives_an_api_pod_restart(w: World) -> None:
    """Issue 21: a label sent through the port-forward is accepted and stored through MLflow in
    the bucket; the API pods are deleted and the new pods know the id: the same label again is
    a duplicate."""
    answer = json.loads(w.irisctl("predict", "6.7", "3.0", "5.2", "2.3", "--json").stdout)
    ident = answer["id"]
    sent = w.irisctl("feedback", ident, "versicolor", "--json")
    assert json.loads(sent.stdout) == {"accepted": 1, "duplicates": [], "unknown": []}, sent
    # Stored by the pod's next round (every 5 s), else by its SIGTERM, which comes only after
    # the preStop pause: by then the new pods may have read the store. So: stored first.
    store = FeedbackStore(f"http://127.0.0.1:{w.ports['mlflow']}", "iris-classifier")
    wait_until(
        lambda: any(label.id == ident for _, labels in store.everything() for label in labels),
        60,
        1.0,
        "the label in the model store",
    )
    store.close()
    olds = {p["metadata"]["uid"] for p in w.emu.list("Pod", NS, "app.kubernetes.io/name=model-api")}
    w.kubectl("delete", "pod", "-n", NS, "-l", "app.kubernetes.io/name=model-api", "--wait=true")

    def new_pod_answers() -> bool:
        pods = w.emu.list("Pod", NS, "app.kubernetes.io/name=model-api")
        fresh = [p for p in pods if p["metadata"]["uid"] not in olds]
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for p in fresh
            for c in (p.get("status") or {}).get("conditions") or []
        )
        if not ready:
            return False
        return w.irisctl("predict", "5.1", "3.5", "1.4", "0.2", check=False).returncode == 0

    wait_until(new_pod_answers, 300, 1.0, "a new model-api pod answering through the forward")
    again = w.irisctl("feedback", ident, "versicolor", "--json")
    assert json.loads(again.stdout) == {"accepted": 0, "duplicates": [ident], "unknown": []}
    w.log.write(f"\nfeedback before and after the API pod's restart: {sent.stdout}{again.stdout}")


def _predicted(w: World) -> str:
    answer = json.loads(w.irisctl("predict", "5.1", "3.5", "1.4", "0.2", "--json").stdout)
    return str(answer.get("prediction") or answer)
