"""Reaching the services from this machine: a background ``irisctl port-forward`` process.

The process serves one ``Forward`` (irisctl/portforward.py) per service; its pid is kept in the
state file so later commands reuse it, and ``up``/``down`` stop it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ... import state
from ...clients import web
from ...clients.kube import Cluster
from ...errors import BadInput, IrisctlError
from ...portforward import Forward
from ...settings import RECORDED_PLACE, Config
from ..base import port_key
from .objects import name, newest_first, pod_ready

# service → (pod label app.kubernetes.io/name, container port); local port from the settings.
FORWARDS = {
    "mlflow": ("mlflow", 5000),
    "model-api": ("model-api", 8080),
    "monitor": ("monitor", 8001),
    "prometheus": ("prometheus", 9090),
    "alertmanager": ("alertmanager", 9093),
}


class Forwarder:
    """The port-forward of one IRISCTL_HOME's stack: its local ports, process, and streams."""

    def __init__(
        self,
        config: Config,
        target: str,
        cluster: Callable[[], Cluster],
        server: Callable[[], str],
    ) -> None:
        self.config = config
        self.target = target
        self.home = config.home
        self.cluster = cluster
        self.server = server  # the API server the kubeconfig names now

    def local_port(self, service: str) -> int:
        if service not in FORWARDS:
            raise BadInput(f"{service} has no HTTP endpoint")
        port: int = self.config.ports[port_key(service)]
        return port

    def urls(self) -> dict[str, str]:
        return {s: f"http://127.0.0.1:{self.local_port(s)}" for s in FORWARDS}

    # -- inside `irisctl port-forward` ---------------------------------------------------------

    def opener(self, service: str) -> Callable[[], Any]:
        """A new stream per connection: to the newest ready pod of ``service``, else (like
        ``kubectl port-forward``, which ignores readiness) to its newest running pod: the model
        API is not ready before the first model, yet ``up`` checks it is alive through here."""
        component, port = FORWARDS[service]

        def open_remote() -> Any:
            cluster = self.cluster()
            pods = newest_first(cluster.find("v1", "Pod", f"app.kubernetes.io/name={component}"))
            ready = [p for p in pods if pod_ready(p)]
            running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
            if not ready and not running:
                raise IrisctlError(f"no running pod of {service}")
            return cluster.open_port(name((ready or running)[0]), port)

        return open_remote

    def forward(self, on_error: Callable[[str], None]) -> list[Forward]:
        """Start forwarding every service's local port."""
        # The context guard, and the client's API discovery done once here, not by the first
        # burst of connections at the same time.
        self.cluster().find("v1", "Pod", "app.kubernetes.io/part-of=irisctl")
        forwards = []
        try:
            for service in FORWARDS:
                forwards.append(
                    Forward(self.local_port(service), self.opener(service), on_error).start()
                )
        except OSError as exc:
            for f in forwards:
                f.stop()
            raise IrisctlError(
                f"cannot listen on 127.0.0.1 for {service}: {exc.strerror}",
                "another process holds that port; pick another with "
                f"IRISCTL_{port_key(service).upper()}_PORT",
            ) from None
        return forwards

    # -- the background process ----------------------------------------------------------------

    def pid(self) -> int | None:
        pid = (state.read(self.home) or {}).get("forwarder_pid")
        if not isinstance(pid, int):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            try:
                os.kill(pid, 0)
            except OSError:
                return None
            return pid  # no /proc (macOS): trust the recorded pid
        return pid if b"port-forward" in cmdline else None  # a recycled pid is not ours

    def alive(self) -> bool:
        """Running, listening, and dialling the API server the kubeconfig names now: after
        `minikube stop`/`start` on drivers with a random host port (macOS, Windows, WSL) the
        old one would keep dialling a dead address."""
        recorded = (state.read(self.home) or {}).get("forwarder_server")
        return (
            self.pid() is not None
            and all(web.port_open(self.local_port(s)) for s in FORWARDS)
            and recorded == self.server()
        )

    def start(self) -> None:
        """A background ``irisctl port-forward`` for this stack; its pid and the API server it
        dials go in the state file."""
        self.stop()
        server = self.server()
        busy = [p for p in (self.local_port(s) for s in FORWARDS) if web.port_open(p)]
        if busy:
            raise IrisctlError(
                f"local ports {busy} are held by another process, so the services cannot be "
                "forwarded there",
                "pick others with IRISCTL_MLFLOW_PORT, IRISCTL_API_PORT, … or free them",
            )
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "IRISCTL_HOME": str(self.home),
            "IRISCTL_TARGET": self.target,
            **{f"IRISCTL_{k.upper()}": str(self.config[k]) for k in RECORDED_PLACE},
            **{f"IRISCTL_{k.upper()}_PORT": str(v) for k, v in self.config.ports.items()},
        }
        with (logs / "port-forward.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "irisctl", "port-forward"],
                env={k: v for k, v in env.items() if v},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        state.write(
            self.home,
            {
                **(state.read(self.home) or {}),
                "forwarder_pid": proc.pid,
                "forwarder_server": server,
            },
        )
        deadline = time.monotonic() + 20
        while not all(web.port_open(self.local_port(s)) for s in FORWARDS):
            if proc.poll() is not None or time.monotonic() > deadline:
                lines = (logs / "port-forward.log").read_text(errors="replace").splitlines()
                said = [ln for ln in lines if ln.startswith(("Error:", "Hint:"))][-2:]
                raise IrisctlError(
                    "the port-forward did not start: "
                    + (" ".join(said or lines[-3:]) or "no output"),
                    f"see {logs / 'port-forward.log'}",
                )
            time.sleep(0.2)

    def stop(self, timeout_s: float = 10.0) -> bool:
        """SIGTERM the background forwarder and wait (bounded) until it has exited, so its
        ports are free when this returns (``up`` on a running stack starts a new one)."""
        pid = self.pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)  # its own session: pgid == pid
        deadline = time.monotonic() + timeout_s
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _running(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        return True


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (an exited child not yet reaped holds no port)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc (macOS)
    return stat.rpartition(")")[2].split()[0] != "Z"
