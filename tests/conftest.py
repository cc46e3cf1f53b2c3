"""Shared fixtures: free loopback ports and a real MLflow tracking server.

Every server a fixture starts runs in its own process group and is stopped by that group only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# A runner may start the tests with SIGINT ignored (POSIX: an asynchronous command of a
# non-interactive shell runs with SIGINT ignored). SIG_IGN survives exec, and Python installs no
# KeyboardInterrupt handler when it starts with SIGINT ignored, so every Ctrl-C test would see
# a child that never stops. A handler is reset to the default on exec: children get Ctrl-C back.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# The alert rules of templates/prometheus/alerts.yml, by name: what every alerting test expects
# to find (the rules file, a real Prometheus, `status`).
ALERT_NAMES = frozenset(
    {
        "IrisModelStale",
        "IrisModelAccuracyLow",
        "IrisTrainingFailed",
        "IrisModelApiDown",
        "IrisMonitorDown",
        "IrisInputDrift",
        "IrisLiveAccuracyLow",
    }
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_group(proc: subprocess.Popen | int, grace_s: float = 10.0) -> None:
    """Stop what a test started in its own session (``start_new_session=True``): SIGTERM the
    process group, SIGKILL what is left after ``grace_s``. The leader is reaped as it goes: an
    unreaped leader is a zombie that keeps its group "alive" to ``killpg(pgid, 0)``, which made
    every stop wait out both graces (20 s). ``proc`` may be the pid of a session leader that is
    not this process' child (one a CLI under test spawned): init reaps that one."""
    pgid = proc if isinstance(proc, int) else proc.pid
    for sig, grace in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not isinstance(proc, int):
                proc.poll()
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            continue
        break
    if not isinstance(proc, int):
        proc.wait(timeout=5)


def wait_until(predicate, timeout_s: float, interval_s: float = 0.2, what="condition"):
    """Poll ``predicate`` until it returns a truthy value; fail the test at the deadline.
    ``what`` may be a callable, called at the deadline: what was last seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            pytest.fail(f"timed out after {timeout_s}s waiting for {said}")
        time.sleep(interval_s)


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return 200 <= resp.status < 300
    except OSError:
        return False


@dataclass
class MlflowServer:
    """A real MLflow server (sqlite backend, proxied artifacts) on a free loopback port."""

    root: Path
    port: int
    proc: subprocess.Popen | None = None
    extra_args: tuple[str, ...] = ()
    # What irisctl runs (MLflow minus the gateway and the assistant); ("mlflow", "server") for
    # the plain upstream server.
    module: tuple[str, ...] = ("iris_services.mlflow_server",)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> None:
        env = {
            **os.environ,
            "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{self.root / 'mlflow.db'}",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_ENABLE_AI_GATEWAY": "false",
        }
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - kept for the process' life
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                *self.module,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--serve-artifacts",
                "--artifacts-destination",
                str(self.root / "artifacts"),
                *self.extra_args,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.root,
        )
        wait_until(lambda: http_ok(f"{self.url}/health"), timeout_s, 0.3, "mlflow /health")

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, grace_s=15.0)
            self.proc = None


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One MLflow server for the session (tests use their own experiment/model names)."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_mlflow_server(tmp_path: Path) -> Iterator[MlflowServer]:
    """A private MLflow server, for tests that kill it."""
    server = MlflowServer(tmp_path, free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def signing_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One signing key for the session's trainers, APIs and CLIs (irisctl up makes the real one)."""
    from iris_services.common import signing

    path = tmp_path_factory.mktemp("signing") / signing.KEY_FILE_NAME
    signing.write_key_file(path)
    return path


@pytest.fixture(autouse=True)
def signing_key(monkeypatch: pytest.MonkeyPatch, signing_key_file: Path) -> bytes:
    """Every test's services sign and verify with the session key, as a stack's do."""
    from iris_services.common import signing

    monkeypatch.setenv(signing.KEY_FILE_ENV, str(signing_key_file))
    return signing.read_key_file(signing_key_file)


@pytest.fixture
def service_env(
    monkeypatch: pytest.MonkeyPatch, mlflow_server: MlflowServer, request
) -> dict[str, str]:
    """Environment for the services against the session server, with a model name per test."""
    name = "iris-" + request.node.name.replace("[", "-").replace("]", "")[:40]
    env = {
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "IRIS_MODEL_NAME": name,
        "IRIS_EXPERIMENT": name,
        "IRIS_WAIT_FOR_MLFLOW_SECONDS": "5",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
        "IRIS_SEED": "4",  # a seed whose sampled forest passes the 0.9 gate (accuracy 0.933)
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


# -- a real Docker engine, and the base image of ours (tests/images, the wire e2e) --------------

BASE = "irisctl-test-base:bookworm"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def docker(
    *args: str, timeout: float = 600, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=check
    )


@pytest.fixture(scope="session")
def engine() -> None:
    """A running Docker engine, or a skip (a failure in CI)."""
    if shutil.which("docker") is None or docker("info", check=False).returncode != 0:
        if os.environ.get("CI"):
            pytest.fail("CI needs a running Docker engine (.ci/run starts dockerd)")
        pytest.skip("no Docker engine here (apt-get install docker.io; dockerd &)")


@pytest.fixture(scope="session")
def base_image(engine, tmp_path_factory) -> str:
    """Nothing can be pulled here: a Debian bookworm minbase from debootstrap (Python 3.11),
    with this machine's CA bundle so pip reaches the package registries."""
    if docker("image", "inspect", BASE, check=False).returncode == 0:
        return BASE
    if shutil.which("debootstrap") is None:
        pytest.fail("debootstrap is needed to make the base image: apt-get install debootstrap")
    root = tmp_path_factory.mktemp("base") / "root"
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,python3-pip,ca-certificates,passwd",
            "bookworm",
            str(root),
        ],
        check=True,
        capture_output=True,
        timeout=900,
    )
    shutil.copyfile(CA_BUNDLE, root / "etc/ssl/certs/ca-certificates.crt")
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(
        ["docker", "import", "--change", f"ENV PIP_CERT={CA_BUNDLE}", "-", BASE],
        stdin=tar.stdout,
        check=True,
        capture_output=True,
        timeout=600,
    )
    tar.wait(timeout=60)
    shutil.rmtree(root, ignore_errors=True)
    return BASE
