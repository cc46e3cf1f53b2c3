"""Local TCP ports forwarded to pods, through the Kubernetes API server (like ``kubectl
port-forward``, which works with minikube's docker driver on macOS and Windows too).

Each accepted connection opens its own stream to a pod chosen at that moment, so a pod that
restarts or is replaced (a rollout) is picked up by the next connection: a dropped stream
reconnects without restarting the forwarder.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Callable
from typing import Any

Opener = Callable[[], Any]  # → a connected socket-like object (fileno, send, recv, close)


class Forward:
    """127.0.0.1:``local_port`` → whatever ``open_remote`` connects to, per connection."""

    def __init__(
        self,
        local_port: int,
        open_remote: Opener,
        on_error: Callable[[str], None] = lambda msg: None,
        attempts: int = 3,
    ) -> None:
        self.open_remote = open_remote
        self.on_error = on_error
        self.attempts = attempts
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", local_port))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True, name=f"fwd-{self.port}")

    def start(self) -> Forward:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _connect(self) -> Any:
        last = ""
        for _ in range(self.attempts):
            try:
                return self.open_remote()
            except Exception as exc:  # any failure to reach the pod: try a fresh pod
                last = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        self.on_error(f"port {self.port}: no stream to a pod after {self.attempts} tries: {last}")
        return None

    def _serve(self, conn: socket.socket) -> None:
        remote = self._connect()
        if remote is None:
            conn.close()
            return
        try:
            pump(conn, remote, self._stopped)
        finally:
            for s in (conn, remote):
                with contextlib.suppress(OSError):
                    s.close()
        said = getattr(remote, "error", lambda: None)()
        if said:  # the kubelet's words, e.g. "… connect: connection refused" (like kubectl)
            self.on_error(f"port {self.port}: the pod's side said: {said.strip()}")


def pump(a: Any, b: Any, stopped: threading.Event) -> None:
    """Copy bytes both ways until either side closes or fails (then both are closed)."""
    peers = {a.fileno(): (a, b), b.fileno(): (b, a)}
    while not stopped.is_set():
        readable, _, _ = select.select(list(peers), [], [], 0.5)
        for fd in readable:
            src, dst = peers[fd]
            try:
                data = src.recv(65536)
                if not data:
                    return
                dst.sendall(data)
            except OSError:
                return
