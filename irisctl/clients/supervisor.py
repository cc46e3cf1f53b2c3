"""supervisord over its XML-RPC unix socket (the local target's process supervisor)."""

from __future__ import annotations

import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

from ..errors import IrisctlError


class Supervisor:
    """One supervisord, identified by its config file and socket."""

    def __init__(self, config: Path, socket: Path) -> None:
        self.config = config
        self.socket = socket

    def _rpc(self) -> Any:
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, f"unix://{self.socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def running(self) -> bool:
        """True when a supervisord answers on the socket."""
        if not self.socket.exists():
            return False
        try:
            return self._rpc().getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Error):
            return False

    def start(self, timeout_s: float = 20.0) -> None:
        """Start supervisord (it daemonizes) and wait until it answers."""
        proc = subprocess.run(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.config)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if proc.returncode != 0:
            raise IrisctlError(
                f"supervisord did not start: {(proc.stderr or proc.stdout).strip()[-500:]}",
                f"see {self.config.parent.parent / 'logs' / 'supervisord.log'}",
            )
        deadline = time.monotonic() + timeout_s
        while not self.running():
            if time.monotonic() > deadline:
                raise IrisctlError("supervisord started but does not answer on its socket")
            time.sleep(0.1)

    def add_programs(self) -> list[str]:
        """Re-read the config file and start the programs it gained (``supervisorctl update``
        for additions only); returns their names."""
        rpc = self._rpc()
        added, _changed, _removed = rpc.reloadConfig()[0]
        for name in added:
            rpc.addProcessGroup(name)
        return list(added)

    def processes(self) -> dict[str, dict[str, Any]]:
        """name → supervisord's process info (statename, pid, start, now, exitstatus, …)."""
        return {p["name"]: p for p in self._rpc().getAllProcessInfo()}

    def info(self, name: str) -> dict[str, Any]:
        return dict(self._rpc().getProcessInfo(name))

    def start_process(self, name: str) -> bool:
        """Start one program; False when it was already running."""
        try:
            self._rpc().startProcess(name, True)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_STARTED" in fault.faultString:
                return False
            raise IrisctlError(
                f"supervisord could not start {name}: {fault.faultString}",
                f"see `irisctl logs {name}`",
            ) from None
        return True

    def stop_process(self, name: str) -> bool:
        """Stop one program (its whole process group); False when it was not running."""
        try:
            self._rpc().stopProcess(name, True)
        except xmlrpc.client.Fault as fault:
            if "NOT_RUNNING" in fault.faultString:
                return False
            raise IrisctlError(f"supervisord could not stop {name}: {fault.faultString}") from None
        return True

    def pid(self) -> int | None:
        try:
            return int(self._rpc().getPID())
        except (OSError, xmlrpc.client.Error):
            return None

    def shutdown(self, timeout_s: float = 60.0) -> None:
        """Stop every program (by process group) and then supervisord itself; wait for both."""
        pid = self.pid()
        rpc = self._rpc()
        try:
            rpc.stopAllProcesses(True)
            rpc.shutdown()
        except (OSError, xmlrpc.client.Error):
            pass  # it may already be going away
        deadline = time.monotonic() + timeout_s
        while pid is not None and _alive(pid):
            if time.monotonic() > deadline:
                raise IrisctlError(f"supervisord (pid {pid}) did not stop within {timeout_s:.0f}s")
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
