"""The local target's lifecycle: ``up`` (render, write, start supervisord, wait healthy),
``down``, ``status``, training and logs, over supervisord's XML-RPC socket."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from iris_services.common.signing import SECRET_KEY

from ... import state
from ...clients import web
from ...clients.supervisor import Supervisor
from ...errors import BadInput, IrisctlError, NotUp
from ...settings import Config
from ..base import (
    Check,
    Progress,
    ServiceState,
    TrainerLog,
    TrainOutcome,
    port_key,
    training_busy,
)
from . import files, logs
from .layout import HEALTH_PATHS, Layout
from .mlflow_db import upgrade_if_needed
from .programs import TRAINER_BUSY, Program, programs

if TYPE_CHECKING:
    from ...portforward import Forward

PORT_FLAGS = {
    "mlflow": "--mlflow-port",
    "api": "--api-port",
    "monitor": "--monitor-port",
    "prometheus": "--prometheus-port",
    "alertmanager": "--alertmanager-port",
}
_FINAL_STATES = {"EXITED", "STOPPED", "FATAL", "UNKNOWN"}


class LocalTarget:
    """The embedded default: supervised local processes on 127.0.0.1."""

    name = "local"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.layout = Layout.of(config)
        self.home = self.layout.home
        self.run_dir = self.layout.run_dir
        self.logs_dir = self.layout.logs_dir
        self.data_dir = self.layout.data_dir
        self.signing_key_file = self.layout.signing_key_file
        self.supervisor = Supervisor(
            self.run_dir / "supervisord.conf", self.run_dir / "supervisor.sock"
        )

    # -- configuration -------------------------------------------------------------------------

    def programs(self) -> list[Program]:
        """Every supervised program of the stack."""
        return programs(self.layout)

    def render(self) -> dict[str, str]:
        """Every file ``up`` writes (supervisord, Prometheus, rules, Alertmanager), by name."""
        return files.render(self.layout)

    # -- lifecycle -----------------------------------------------------------------------------

    def is_up(self) -> bool:
        return self.supervisor.running()

    def up(self, progress: Progress) -> None:
        rendered = self.render()
        if self.supervisor.running():
            current = (self.run_dir / "supervisord.conf").read_text()
            changed, added = [], []
            if current != rendered["supervisord.conf"]:
                changed = files.changed_settings(current, rendered["supervisord.conf"])
            # Prometheus/Alertmanager installed since the last `up`: add them, change nothing else.
            if changed and set(changed) <= {f"{n} added" for n in ("prometheus", "alertmanager")}:
                files.write(self.layout, rendered)
                added = self.supervisor.add_programs()
                for name in added:
                    progress(name, "added")
            elif current != rendered["supervisord.conf"]:
                raise IrisctlError(
                    "the local stack is running with different settings"
                    + (f": {'; '.join(changed)}" if changed else ""),
                    "run `irisctl down` first, then `irisctl up` with the new settings",
                )
            progress("supervisord", "already running")
            autostart = {p.name for p in self.programs() if p.autostart}
            for name, info in self.supervisor.processes().items():
                # Just added: supervisord is starting them already.
                if name in autostart and name not in added and info["statename"] != "RUNNING":
                    self.supervisor.start_process(name)
                    progress(name, "restarted")
        else:
            self._check_ports()
            upgrade_if_needed(self.data_dir / "mlflow.db", progress)
            files.write(self.layout, rendered)
            progress("supervisord", "starting")
            self.supervisor.start()
        self._wait_healthy(progress)
        state.write(
            self.home,
            {
                "target": self.name,
                "up": True,
                "ports": self.config.ports,
                "started_at": time.time(),
            },
        )

    def _check_ports(self) -> None:
        wanted = {port_key(p.name) for p in self.programs()}
        for key, port in self.config.ports.items():
            if key not in wanted:
                continue
            if not web.port_free(port):
                raise IrisctlError(
                    f"port {port} ({key}) is already in use by another process",
                    f"pick another with {PORT_FLAGS[key]} or IRISCTL_{key.upper()}_PORT",
                )

    def _wait_healthy(self, progress: Progress, timeout_s: float = 180.0) -> None:
        pending = {p.name for p in self.programs() if p.name in HEALTH_PATHS}
        deadline = time.monotonic() + timeout_s
        for name in sorted(pending):
            progress(name, "waiting")
        while pending:
            infos = self.supervisor.processes()
            for name in sorted(pending):
                statename = infos.get(name, {}).get("statename")
                if statename in ("FATAL", "EXITED", "STOPPED"):
                    last = logs.last_line(self.logs_dir, name)
                    raise IrisctlError(
                        f"{name} failed to start ({statename.lower()}): {last}",
                        f"see `irisctl logs {name}`",
                    )
                if statename == "RUNNING" and web.healthy(
                    self.endpoint(name) + HEALTH_PATHS[name], 1.0
                ):
                    pending.discard(name)
                    progress(name, "healthy")
            if pending and time.monotonic() > deadline:
                raise IrisctlError(
                    f"not healthy after {timeout_s:.0f}s: {', '.join(sorted(pending))}",
                    "see `irisctl logs SERVICE` for each",
                )
            if pending:
                time.sleep(0.5)

    def purge_scope(self) -> str:
        """What ``down --purge`` deletes, for its confirmation."""
        return f"all irisctl data under {self.home}"

    def down(
        self,
        purge: bool,
        dry_run: bool = False,
        cluster: bool = False,
        progress: Progress | None = None,
    ) -> list[str]:
        if cluster:
            raise BadInput("--cluster stops minikube; the local target has no cluster")
        running = self.supervisor.running()
        doomed = [d for d in (self.data_dir, self.logs_dir, self.run_dir) if purge and d.exists()]
        if dry_run:
            return [
                *(["would stop every service and supervisord"] if running else []),
                *(f"would delete {d}" for d in doomed),
            ]
        done = []
        if running:
            self.supervisor.shutdown()
            done.append("stopped every service and supervisord")
        busy = self._wait_ports_free(10.0)
        if busy:
            done.append(f"warning: ports still in use: {busy}")
        for d in doomed:
            shutil.rmtree(d)
            done.append(f"deleted {d}")
        if purge:
            state.remove(self.home)
        else:
            state.write(self.home, {"target": self.name, "up": False, "ports": self.config.ports})
        return done

    def secrets(self) -> dict[str, str]:
        """The signing key (``up`` made it); no credentials: every service binds 127.0.0.1 and
        MLflow keeps artifacts in a directory."""
        try:
            return {SECRET_KEY: self.signing_key_file.read_text().strip()}
        except FileNotFoundError:
            return {}

    def forward(self, on_error: Callable[[str], None]) -> list[Forward]:
        raise BadInput(
            "the local target needs no port-forward: its services listen on 127.0.0.1",
            "irisctl status shows their URLs",
        )

    def _wait_ports_free(self, timeout_s: float) -> list[int]:
        deadline = time.monotonic() + timeout_s
        while True:
            busy = [p for p in self.config.ports.values() if web.port_open(p)]
            if not busy or time.monotonic() > deadline:
                return busy
            time.sleep(0.2)

    # -- reporting -----------------------------------------------------------------------------

    def endpoint(self, service: str) -> str:
        return self.layout.endpoint(service)

    def page(self, service: str) -> str:
        """The URL to print for a service: one a person can open and read."""
        base = self.endpoint(service)
        if service == "prometheus":
            # Debian's 2.42 has only the classic UI: its /alerts is 404, /classic/alerts is the
            # page; Prometheus 3 dropped /classic.
            classic = web.healthy(f"{base}/classic/alerts", 1.0)
            return f"{base}/classic/alerts" if classic else f"{base}/alerts"
        if service == "alertmanager":
            # Debian's Alertmanager ships no web UI: its API's list of alerts is what there is.
            return f"{base}/api/v2/alerts"
        return base

    def services(self) -> list[ServiceState]:
        if not self.supervisor.running():
            raise NotUp()
        infos = self.supervisor.processes()
        with ThreadPoolExecutor(max_workers=4) as pool:
            health = dict(
                zip(
                    HEALTH_PATHS,
                    pool.map(
                        lambda n: web.healthy(self.endpoint(n) + HEALTH_PATHS[n], 1.5), HEALTH_PATHS
                    ),
                    strict=True,
                )
            )
        out = []
        for name in (
            "mlflow",
            "trainer",
            "model-api",
            "monitor",
            "prometheus",
            "alertmanager",
            "scheduler",
        ):
            info = infos.get(name)
            if info is None:
                detail = f"{name} is not installed" if name in HEALTH_PATHS else ""
                out.append(ServiceState(name, "absent", None, detail=detail))
                continue
            st = info["statename"].lower()
            if st == "running" and name in health and not health[name]:
                st = "unhealthy"
            out.append(
                ServiceState(
                    name,
                    st,
                    self.endpoint(name) if name in HEALTH_PATHS else None,
                    uptime_s=float(info["now"] - info["start"])
                    if info["statename"] == "RUNNING"
                    else None,
                    pid=info["pid"] or None,
                    detail=_exit_detail(info) if name == "trainer" else "",
                    page=self.page(name) if name in HEALTH_PATHS else None,
                )
            )
        return out

    # -- training and logs ---------------------------------------------------------------------

    def train(self, on_line: Callable[[str], None], attach: bool = False) -> TrainOutcome:
        if not self.supervisor.running():
            raise NotUp()
        info = self.supervisor.info("trainer")
        running = info["statename"] in ("RUNNING", "STARTING")
        if running and not attach:
            raise training_busy(f"pid {info['pid']}" if info.get("pid") else "")
        log = self.logs_dir / "trainer.log"
        offset = log.stat().st_size if log.exists() else 0
        if not running and not self.supervisor.start_process("trainer"):
            raise training_busy()
        said = TrainerLog()
        finished = False
        while True:
            if finished:
                time.sleep(0.3)  # let supervisord drain the last output into the log
            info = self.supervisor.info("trainer")
            finished = info["statename"] in _FINAL_STATES
            lines, offset = logs.read_new_lines(log, offset)
            for line in lines:
                said.read(line)
                on_line(line)
            if finished and not lines:
                break
            time.sleep(0.2)
        code = int(info.get("exitstatus", 1))
        if code == TRAINER_BUSY:
            raise training_busy()
        return TrainOutcome(exit_code=code, summary=said.summary, error=said.error)

    def cancel_training(self) -> list[str]:
        if not self.supervisor.running():
            raise NotUp()
        pid = self.supervisor.info("trainer").get("pid")
        if not self.supervisor.stop_process("trainer"):
            return []
        return [f"stopped the training (pid {pid})" if pid else "stopped the training"]

    def logs(self, service: str, follow: bool, tail: int | None) -> Iterator[str]:
        return logs.logs(self.logs_dir, service, follow, tail)

    def checks(self) -> list[Check]:
        try:
            import supervisor  # noqa: F401
        except ImportError:
            return [Check("supervisord", "fail", "not installed", "pip install supervisor")]
        return [Check("supervisord", "ok", "python package `supervisor` installed")]


def _exit_detail(info: dict[str, Any]) -> str:
    if info["statename"] == "EXITED":
        return f"last run exited {info.get('exitstatus')}"
    return ""
