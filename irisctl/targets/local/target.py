"""The local target: every service as a process on this machine, under supervisord.

MLflow keeps a sqlite backend and an artifact directory under ``IRISCTL_HOME/data``; Prometheus
is the system binary with its own config and data directory. Every service binds 127.0.0.1 and
runs in its own process group, which supervisord stops as a whole (RELIABILITY.md E4).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iris_services.common.signing import KEY_FILE_ENV, KEY_FILE_NAME, SECRET_KEY, write_key_file

from .. import render, state
from ..clients import web
from ..clients.supervisor import Supervisor
from ..errors import BadInput, IrisctlError, NotUp
from ..settings import Config
from .base import (
    Progress,
    ServiceState,
    TrainerLog,
    TrainOutcome,
    port_key,
    seed_settings,
    service_settings,
    telemetry_settings,
    training_busy,
)
from .mlflow_db import upgrade_if_needed

if TYPE_CHECKING:
    from ..portforward import Forward

RULES_TEMPLATE = "prometheus/alerts.yml"
HEALTH_PATHS = {
    "mlflow": "/health",
    "model-api": "/healthz",
    "monitor": "/metrics",
    "prometheus": "/-/ready",
    "alertmanager": "/-/ready",
}
PORT_FLAGS = {
    "mlflow": "--mlflow-port",
    "api": "--api-port",
    "monitor": "--monitor-port",
    "prometheus": "--prometheus-port",
    "alertmanager": "--alertmanager-port",
}
TRAINER_BUSY = 75
_FINAL_STATES = {"EXITED", "STOPPED", "FATAL", "UNKNOWN"}
_MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to 108 bytes


@dataclass
class Program:
    """One supervisord program."""

    name: str
    command: list[str]
    env: dict[str, str]
    directory: str
    priority: int = 100
    autostart: bool = True
    autorestart: str = "true"
    startsecs: int = 3
    stopwaitsecs: int = 15
    exitcodes: str = ""


class LocalTarget:
    """The embedded default: supervised local processes on 127.0.0.1."""

    name = "local"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.home = config.home
        self.run_dir = self.home / "run"
        self.logs_dir = self.home / "logs"
        self.data_dir = self.home / "data"
        # What the trainer signs its versions with (README, "Security"); purged with the data.
        self.signing_key_file = self.data_dir / KEY_FILE_NAME
        self.supervisor = Supervisor(
            self.run_dir / "supervisord.conf", self.run_dir / "supervisor.sock"
        )
        self.prometheus_bin = shutil.which("prometheus")
        # Debian names the binary prometheus-alertmanager; upstream's is alertmanager.
        self.alertmanager_bin = shutil.which("prometheus-alertmanager") or shutil.which(
            "alertmanager"
        )

    # -- configuration -------------------------------------------------------------------------

    def service_env(self) -> dict[str, str]:
        """The settings every service reads, the same names the Kubernetes ConfigMap carries."""
        return {**service_settings(self.config, self.endpoint("mlflow")), "HOST": "127.0.0.1"}

    def programs(self) -> list[Program]:
        """Every supervised program of the stack."""
        py = sys.executable
        ports = self.config.ports
        env = self.service_env()
        home = str(self.home)
        programs = [
            Program(
                "mlflow",
                [
                    py,
                    "-m",
                    # `mlflow server` minus the AI Gateway and the Assistant (README, Security)
                    "iris_services.mlflow_server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(ports["mlflow"]),
                    "--workers",
                    "1",
                    "--serve-artifacts",
                    "--artifacts-destination",
                    str(self.data_dir / "artifacts"),
                ],
                # Lean MLflow (RELIABILITY.md H2): one worker, no job consumers.
                {
                    "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{self.data_dir / 'mlflow.db'}",
                    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                    "MLFLOW_ENABLE_AI_GATEWAY": "false",
                    "PYTHONUNBUFFERED": "1",
                    **telemetry_settings(self.config),
                },
                home,
                priority=10,
                startsecs=5,
                stopwaitsecs=20,
            ),
            Program(
                "model-api",
                [py, "-m", "iris_services.api"],
                {
                    **env,
                    "PORT": str(ports["api"]),
                    "IRIS_API_WORKERS": str(self.config["api_workers"]),
                    # the workers share one download of each graph (<sha256>.onnx) here
                    "IRIS_MODEL_CACHE_DIR": str(self.run_dir / "model-api"),
                    # only the trainer and the API hold the key; MLflow never does
                    KEY_FILE_ENV: str(self.signing_key_file),
                },
                home,
                priority=20,
            ),
            Program(
                "monitor",
                [py, "-m", "iris_services.monitor"],
                {**env, "PORT": str(ports["monitor"])},
                home,
                priority=20,
            ),
            Program(
                "trainer",
                [py, "-m", "iris_services.train"],
                {
                    **env,
                    "IRIS_TRAIN_LOCK": str(self.run_dir / "train.lock"),
                    KEY_FILE_ENV: str(self.signing_key_file),
                    **seed_settings(self.config),
                },
                home,
                priority=30,
                autostart=False,
                autorestart="false",
                startsecs=0,
                exitcodes=f"0,{TRAINER_BUSY}",
            ),
            Program(
                "scheduler",
                [py, "-m", "iris_services.scheduler"],
                {
                    "IRIS_TRAIN_SCHEDULE": self.config["train_schedule"],
                    "PYTHONUNBUFFERED": "1",
                    **telemetry_settings(self.config),
                },
                home,
                priority=40,
            ),
        ]
        if self.prometheus_bin:
            programs.append(
                Program(
                    "prometheus",
                    [
                        self.prometheus_bin,
                        f"--config.file={self.run_dir / 'prometheus.yml'}",
                        f"--storage.tsdb.path={self.data_dir / 'prometheus'}",
                        "--storage.tsdb.retention.size=512MB",
                        f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
                        # The address irisctl prints, in alerts' generatorURL (not the hostname).
                        f"--web.external-url={self.endpoint('prometheus')}/",
                    ],
                    {},
                    home,
                    priority=15,
                )
            )
        if self.prometheus_bin and self.alertmanager_bin:
            programs.append(
                Program(
                    "alertmanager",
                    [
                        self.alertmanager_bin,
                        f"--config.file={self.run_dir / 'alertmanager.yml'}",
                        f"--storage.path={self.data_dir / 'alertmanager'}",
                        f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
                        "--cluster.listen-address=",  # no gossip port: a single local instance
                    ],
                    {},
                    home,
                    priority=15,
                )
            )
        return programs

    def render(self) -> dict[str, str]:
        """Every file ``up`` writes (supervisord, Prometheus, rules, Alertmanager), by name."""
        programs = [
            {**p.__dict__, "command": shlex.join(p.command).replace("%", "%%")}
            for p in self.programs()
        ]
        alertmanager = self.prometheus_bin is not None and self.alertmanager_bin is not None
        files = {
            "supervisord.conf": render.render(
                "local/supervisord.conf.j2",
                home=self.home,
                run_dir=self.run_dir,
                logs_dir=self.logs_dir,
                programs=programs,
            ),
            "prometheus.yml": render.render(
                "local/prometheus.yml.j2",
                ports=self.config.ports,
                scrape_interval=self.config["scrape_interval"],
                rules_file=str(self.run_dir / "alerts.yml"),
                alertmanager=alertmanager,
            ),
            "alerts.yml": render.cap_for(
                render.runbooks_at(render.read(RULES_TEMPLATE), self.endpoint("model-api")),
                self.config["alert_for_max"],
            ),
        }
        if alertmanager:
            files["alertmanager.yml"] = render.render(
                "local/alertmanager.yml.j2",
                webhook_url=self.config["alert_webhook_url"],
                webhook_url_file=None,
            )
        return files

    # -- lifecycle -----------------------------------------------------------------------------

    def is_up(self) -> bool:
        return self.supervisor.running()

    def up(self, progress: Progress) -> None:
        files = self.render()
        if self.supervisor.running():
            current = (self.run_dir / "supervisord.conf").read_text()
            changed, added = [], []
            if current != files["supervisord.conf"]:
                changed = changed_settings(current, files["supervisord.conf"])
            # Prometheus/Alertmanager installed since the last `up`: add them, change nothing else.
            if changed and set(changed) <= {f"{n} added" for n in ("prometheus", "alertmanager")}:
                self._write(files)
                added = self.supervisor.add_programs()
                for name in added:
                    progress(name, "added")
            elif current != files["supervisord.conf"]:
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
            self._write(files)
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

    def _write(self, files: dict[str, str]) -> None:
        sock = self.run_dir / "supervisor.sock"
        if len(str(sock)) > _MAX_SOCKET_PATH:
            raise BadInput(
                f"IRISCTL_HOME is too long for a unix socket: {sock}",
                "set IRISCTL_HOME to a shorter path",
            )
        for d in (self.run_dir, self.logs_dir, self.data_dir, self.data_dir / "artifacts"):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.home.chmod(0o700)
        write_key_file(self.signing_key_file)
        for name, text in files.items():  # 0600 whatever the umask: alertmanager.yml holds
            fd = os.open(self.run_dir / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)  # the webhook URL, a credential
            with os.fdopen(fd, "w") as out:
                out.write(text)

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
                    raise IrisctlError(
                        f"{name} failed to start ({statename.lower()}): {self._last_line(name)}",
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
        key = port_key(service)
        if key not in self.config.ports:
            raise BadInput(f"{service} has no HTTP endpoint")
        return f"http://127.0.0.1:{self.config.ports[key]}"

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
            lines, offset = _read_new_lines(log, offset)
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
        path = self.logs_dir / f"{service}.log"
        if not path.exists():
            raise IrisctlError(
                f"no log for {service} yet ({path})",
                "run `irisctl up` (and `irisctl train --now` for the trainer)",
            )
        lines = path.read_text(errors="replace").splitlines()
        if service == "trainer":  # the last training run only
            starts = [i for i, ln in enumerate(lines) if '"training.start"' in ln]
            if starts:
                lines = lines[starts[-1] :]
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        yield from lines
        if follow:
            offset = path.stat().st_size
            while True:
                new, offset = _read_new_lines(path, offset)
                yield from new
                if not new:
                    time.sleep(0.3)

    def _last_line(self, name: str) -> str:
        """The service's last log line, else supervisord's last word about it."""
        for path, keep in (
            (self.logs_dir / f"{name}.log", lambda ln: True),
            (self.logs_dir / "supervisord.log", lambda ln: f" {name}" in ln),
        ):
            if path.exists():
                lines = [
                    ln
                    for ln in path.read_text(errors="replace").splitlines()
                    if ln.strip() and keep(ln)
                ]
                if lines:
                    return lines[-1][:300]
        return "no log"


def changed_settings(running: str, wanted: str) -> list[str]:
    """What differs between two rendered supervisord configs, in words: the program and the
    setting (``model-api: IRIS_API_WORKERS 2 → 4``)."""
    import configparser

    def parse(text: str) -> configparser.RawConfigParser:
        parser = configparser.RawConfigParser(strict=False)
        parser.read_string(text)
        return parser

    old, new = parse(running), parse(wanted)
    out = []
    for section in sorted(set(old.sections()) | set(new.sections())):
        name = section.removeprefix("program:")
        if not old.has_section(section) or not new.has_section(section):
            out.append(f"{name} {'added' if new.has_section(section) else 'removed'}")
            continue
        for key in sorted(set(old[section]) | set(new[section])):
            before, after = old[section].get(key, "-"), new[section].get(key, "-")
            if before == after:
                continue
            if key == "environment":
                envs = _env_pairs(before), _env_pairs(after)
                for var in sorted(set(envs[0]) | set(envs[1])):
                    if envs[0].get(var) != envs[1].get(var):
                        out.append(f"{name}: {var} {envs[0].get(var)} → {envs[1].get(var)}")
            elif key == "command":
                a, b = before.split(), after.split()
                out.append(
                    f"{name}: {' '.join(t for t in a if t not in b) or '-'} → "
                    f"{' '.join(t for t in b if t not in a) or '-'}"
                )
            else:
                out.append(f"{name}: {key} {before} → {after}")
    return out


def _env_pairs(text: str) -> dict[str, str]:
    lexer = shlex.shlex(text, posix=True)
    lexer.whitespace, lexer.whitespace_split = ",", True  # KEY="v, with commas",KEY2="v2"
    pairs = {}
    for item in lexer:
        key, _, value = item.partition("=")
        pairs[key] = value
    return pairs


def _exit_detail(info: dict[str, Any]) -> str:
    if info["statename"] == "EXITED":
        return f"last run exited {info.get('exitstatus')}"
    return ""


def _read_new_lines(path: Path, offset: int) -> tuple[list[str], int]:
    """Complete lines appended to ``path`` since ``offset`` (rotation restarts at 0)."""
    if not path.exists():
        return [], offset
    size = path.stat().st_size
    if size < offset:
        offset = 0
    if size == offset:
        return [], offset
    with path.open("rb") as fh:
        fh.seek(offset)
        data = fh.read()
    end = data.rfind(b"\n") + 1
    if end == 0:
        return [], offset
    return data[:end].decode(errors="replace").splitlines(), offset + end
