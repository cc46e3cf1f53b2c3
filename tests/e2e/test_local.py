"""The whole lifecycle on the real local target: supervisord, MLflow, the API, the monitor and
Prometheus as real processes on loopback, driven through the installed CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ALERT_NAMES, free_port, http_ok, wait_until

pytestmark = pytest.mark.e2e


class Cli:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.ports = {
            k: free_port() for k in ("mlflow", "api", "monitor", "prometheus", "alertmanager")
        }
        self.env = {
            **os.environ,
            "IRISCTL_HOME": str(home),
            **{f"IRISCTL_{k.upper()}_PORT": str(p) for k, p in self.ports.items()},
            "IRISCTL_POLL_SECONDS": "1",
            "COLUMNS": "200",
        }

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "irisctl", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def json(self, *args: str) -> dict:
        proc = self(*args, "--json")
        # status exits 1 when degraded and still prints its JSON; anything else is a failure.
        assert proc.returncode == 0 or (args[0] == "status" and proc.returncode == 1), (
            f"irisctl {' '.join(args)} exited {proc.returncode}: {proc.stdout}{proc.stderr}"
        )
        return json.loads(proc.stdout)


def pids(status: dict) -> dict[str, int]:
    return {n: s["pid"] for n, s in status["services"].items() if s["state"] == "running"}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def group_rss_mib(pid: int) -> float:
    """Resident memory of every process in ``pid``'s process group (a service and its children)."""
    group, total_kib = os.getpgid(pid), 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getpgid(int(entry)) != group:
                continue
            with open(f"/proc/{entry}/status") as fh:
                total_kib += next(int(ln.split()[1]) for ln in fh if ln.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue  # the process ended, or is a kernel thread
    return total_kib / 1024


def assert_readable(url: str) -> None:
    """200, and a page, text or JSON a person can read (not `{"detail": "Not Found"}`)."""
    resp = httpx.get(url, follow_redirects=True, timeout=10)
    assert resp.status_code == 200, f"{url}: {resp.status_code}"
    kind = resp.headers.get("content-type", "")
    assert kind.startswith(("text/html", "text/plain", "application/json")), f"{url}: {kind}"
    if kind.startswith("text/html"):
        assert re.search(r"<title>[^<]+</title>|<h1>", resp.text), f"{url}: a page without a title"
    elif kind.startswith("application/json"):
        assert "Not Found" not in json.dumps(resp.json()), url
    else:
        assert resp.text.strip(), f"{url}: empty"


@pytest.fixture
def cli(tmp_path_factory):
    home = tmp_path_factory.mktemp("e2e", numbered=True)
    c = Cli(home)
    yield c
    c("down", timeout=120)  # never leave processes behind, whatever failed


def test_e1_e2_e4_lifecycle(cli):
    proc = cli("up")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "irisctl is up on the local target" in proc.stdout
    assert "training a first model" in proc.stdout

    first = cli.json("status")
    assert set(first["services"]) >= {"mlflow", "trainer", "model-api", "monitor", "prometheus"}
    assert first["model"]["version"] == "1" and first["model"]["alias"] == "champion"

    # Every URL `up` and `status` print leads somewhere a person can read.
    printed = set(re.findall(r"http://127\.0\.0\.1:\d+\S*", proc.stdout))
    printed |= {s["url"] for s in first["services"].values() if s["url"]}
    assert len(printed) >= 4, printed
    for url in sorted(printed):
        assert_readable(url)
    api = f"http://127.0.0.1:{cli.ports['api']}"
    assert "version 1" in httpx.get(api, timeout=10).text
    # Alerts' generatorURL names the address irisctl prints, not this machine's hostname.
    flags = httpx.get(f"http://127.0.0.1:{cli.ports['prometheus']}/api/v1/status/flags").json()
    assert flags["data"]["web.external-url"] == f"http://127.0.0.1:{cli.ports['prometheus']}/"
    # A healthy start logs no errors: the API and the monitor wait quietly for MLflow.
    for service in ("model-api", "monitor"):
        lines = (cli.home / "logs" / f"{service}.log").read_text().splitlines()
        records = [json.loads(ln) for ln in lines if ln.startswith("{")]
        assert not [ln for ln in lines if not ln.startswith("{")], f"{service}: not JSON"
        loud = [r for r in records if r["level"] in ("error", "warning", "critical")]
        assert not loud, f"{service}: {loud}"
        waits = [r for r in records if r.get("event") == "wait"]
        assert len(waits) <= 1, f"{service} waited noisily: {waits}"

    # up again changes nothing: same processes, no new model version.
    again = cli("up")
    assert again.returncode == 0 and "already running" in again.stdout
    assert "training a first model" not in again.stdout
    assert pids(cli.json("status")) == pids(first)

    answer = cli.json("predict", "5.1", "3.5", "1.4", "0.2")
    assert answer["prediction"] == "setosa" and answer["model"]["version"] == "1"

    trained = cli("train", "--now", "--json")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    summary = json.loads(trained.stdout)["summary"]
    assert summary["run_id"] and 0 <= summary["accuracy"] <= 1
    assert "training started" in trained.stderr  # the log was streamed

    status = cli.json("status")
    assert status["model"]["version"] == summary["champion_version"]
    assert len(status["runs"]) == 2
    # Alert states come from the real Prometheus (one per rule in the rules file).
    assert status["alerts"] is not None, status["alerts_reason"]
    assert {a["name"] for a in status["alerts"]} == ALERT_NAMES
    assert all(a["state"] in ("inactive", "pending", "firing") for a in status["alerts"])
    # `train --now` returns once the API serves the new champion: no waiting here.
    served = cli.json("predict", "5.1", "3.5", "1.4", "0.2")["model"]["version"]
    assert served == summary["champion_version"]

    # H2: each service's whole process group fits its Kubernetes limit with 30 % headroom.
    from irisctl.targets.kube import RESOURCES
    from irisctl.targets.kube.manifests import memory_mib

    for service, key in (("mlflow", "mlflow"), ("model-api", "api"), ("monitor", "monitor")):
        limit_mib = memory_mib(RESOURCES[key][3])
        used = group_rss_mib(status["services"][service]["pid"])
        assert used < 0.7 * limit_mib, f"{service}: {used:.0f} MiB of a {limit_mib} MiB limit"

    # The supervisor brings a killed API back.
    api_pid = status["services"]["model-api"]["pid"]
    os.kill(api_pid, signal.SIGKILL)
    wait_until(
        lambda: (
            (s := cli.json("status")["services"]["model-api"])["state"] == "running"
            and s["pid"] != api_pid
        ),
        60,
        0.5,
        "the supervisor to restart the API",
    )
    wait_until(
        lambda: http_ok(f"http://127.0.0.1:{cli.ports['api']}/readyz"),
        60,
        what="the restarted API to load the champion",
    )

    # down stops every process group and frees every port; data stays.
    running = pids(cli.json("status"))
    proc = cli("down")
    assert proc.returncode == 0, proc.stderr
    assert not [n for n, p in running.items() if alive(p)]
    assert "warning" not in proc.stdout
    assert cli("status").returncode == 3
    down = cli("status", "--json")
    assert down.returncode == 3
    assert {s["state"] for s in json.loads(down.stdout)["services"].values()} == {"stopped"}
    assert cli("predict", "5.1", "3.5", "1.4", "0.2").returncode == 3

    proc = cli("up")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "training a first model" not in proc.stdout
    after = cli.json("status")
    assert after["model"] == status["model"]
    assert cli.json("predict", "6.3", "3.3", "6.0", "2.5")["prediction"] == "virginica"
    assert (cli.home / "logs" / "model-api.log").stat().st_size > 0
    trainer_log = cli("logs", "trainer")
    assert trainer_log.returncode == 0 and "training.summary" in trainer_log.stdout

    # Ctrl-C stops following, not the training, and says so; `train --cancel` stops it.
    log = cli.home / "logs" / "trainer.log"
    starts = log.read_text().count('"training.start"')
    follow = subprocess.Popen(
        [sys.executable, "-m", "irisctl", "train", "--now"],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: log.read_text().count('"training.start"') > starts, 60, 0.1, "a training")
    follow.send_signal(signal.SIGINT)
    _, err = follow.communicate(timeout=30)
    assert follow.returncode == 130 and "irisctl logs trainer -f" in err, err
    assert "irisctl train --cancel" in err
    cancel = cli("train", "--cancel")
    assert cancel.returncode == 0 and "stopped the training" in cancel.stdout, cancel.stdout
    wait_until(lambda: "training cancelled" in log.read_text(), 30, 0.2, "the trainer to unwind")
    assert cli.json("status")["services"]["trainer"]["state"] != "running"

    running = pids(after)
    proc = cli("down", "--purge", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert not [n for n, p in running.items() if alive(p)]
    assert not (cli.home / "data").exists() and not (cli.home / "logs").exists()
    assert cli("status").returncode == 3


def test_e3_up_killed_midway_is_finished_by_the_next_up(cli):
    """RELIABILITY E3: SIGKILL `up` while services start; the next `up` converges."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "irisctl", "up"],
        env=cli.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(
        lambda: (cli.home / "run" / "supervisor.sock").exists(), 60, 0.1, "supervisord to start"
    )
    proc.kill()
    proc.wait(timeout=10)
    again = cli("up")
    assert again.returncode == 0, again.stdout + again.stderr
    status = cli.json("status")
    assert status["model"] is not None
    assert {s["state"] for n, s in status["services"].items() if n != "trainer"} == {"running"}
    # One supervisord, one listener per port: nothing was started twice.
    conf = str(cli.home / "run" / "supervisord.conf")
    daemons = subprocess.run(
        ["pgrep", "-f", f"supervisord -c {conf}"], capture_output=True, text=True
    ).stdout.split()
    assert len(daemons) == 1


def test_e5_a_port_held_by_a_foreign_process_is_reported_not_killed(cli):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", cli.ports["api"]))
        holder.listen()
        proc = cli("up", timeout=60)
        assert proc.returncode == 1
        assert str(cli.ports["api"]) in proc.stderr and "--api-port" in proc.stderr
        holder.getsockname()  # still ours, still open
    assert not (cli.home / "run" / "supervisor.sock").exists()
