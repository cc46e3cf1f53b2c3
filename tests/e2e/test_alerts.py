"""Every alert really fires in a real Prometheus on the local target, reaches a webhook through
the real Alertmanager, and resolves. Made fast through settings only: a 36 s staleness limit,
1 s scrapes, and every `for:` capped at 1 s (alert_for_max); the `for:` windows themselves are
covered by the promtool tests."""

from __future__ import annotations

import json
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.conftest import ALERT_NAMES, free_port, wait_until
from tests.e2e.test_local import Cli

pytestmark = pytest.mark.e2e


class Webhook:
    """A loopback HTTP receiver that records Alertmanager's notifications."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def saw(self, alertname: str, status: str) -> bool:
        return any(
            a["labels"].get("alertname") == alertname and a["status"] == status
            for n in self.received
            for a in n.get("alerts", [])
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture
def cli(tmp_path_factory, webhook):
    c = Cli(tmp_path_factory.mktemp("alerts", numbered=True))
    c.env.update(
        {
            "IRISCTL_TRAIN_SEED": "0",  # held-out accuracy 0.967 (on the fixed held-out rows)
            "IRISCTL_ACCURACY_THRESHOLD": "0.95",
            "IRISCTL_STALE_AFTER_HOURS": "0.01",  # 36 s
            "IRISCTL_SCRAPE_INTERVAL": "1s",
            "IRISCTL_ALERT_FOR_MAX": "1s",
            "IRISCTL_POLL_SECONDS": "1",
            "IRISCTL_ALERT_WEBHOOK_URL": webhook.url,
        }
    )
    yield c
    c("down", "--purge", "--yes", timeout=120)


def states(cli: Cli) -> dict[str, str]:
    proc = cli("alerts", "--json")
    assert proc.returncode == 0, proc.stderr
    return {a["name"]: a["state"] for a in json.loads(proc.stdout)}


def wait_state(cli: Cli, name: str, state: str, timeout_s: float = 90) -> None:
    wait_until(lambda: states(cli).get(name) == state, timeout_s, 0.5, f"{name} {state}")


def test_c1_d3_every_alert_fires_and_resolves(cli, webhook):
    proc = cli("up")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(states(cli)) == ALERT_NAMES

    # Stale: no run re-validates the champion within the 36 s limit; a training resolves it.
    wait_state(cli, "IrisModelStale", "firing")
    detail = next(
        a for a in json.loads(cli("alerts", "--json").stdout) if a["name"] == "IrisModelStale"
    )
    assert detail["since"] and "champion was not validated for" in detail["summary"]
    assert detail["runbook_url"].endswith("/runbooks#runbook-irismodelstale")
    runbook = httpx.get(detail["runbook_url"], timeout=10)
    assert runbook.status_code == 200 and 'id="runbook-irismodelstale"' in runbook.text
    status = json.loads(cli("status", "--json").stdout)
    assert {"name": "IrisModelStale", "state": "firing"}.items() <= next(
        a for a in status["alerts"] if a["name"] == "IrisModelStale"
    ).items()
    wait_until(
        lambda: webhook.saw("IrisModelStale", "firing"),
        90,
        0.5,
        "Alertmanager to notify the webhook",
    )
    assert cli("train", "--now").returncode == 0
    wait_state(cli, "IrisModelStale", "inactive", 30)

    # A monitor that stops answering fires IrisMonitorDown; it resolves when it answers again.
    services = json.loads(cli("status", "--json").stdout)["services"]
    for service, alert in (("monitor", "IrisMonitorDown"), ("model-api", "IrisModelApiDown")):
        # The whole process group: the API's workers are children of the pid supervisord knows.
        group = os.getpgid(services[service]["pid"])
        os.killpg(group, signal.SIGSTOP)
        try:
            wait_state(cli, alert, "firing", 60)
        finally:
            os.killpg(group, signal.SIGCONT)
        wait_state(cli, alert, "inactive", 60)
    assert states(cli)["IrisModelAccuracyLow"] == "inactive"
    assert states(cli)["IrisTrainingFailed"] == "inactive"

    # Raise the bar above the champion's 0.967, and make training fail (an invalid seed).
    assert cli("down").returncode == 0
    cli.env.update({"IRISCTL_ACCURACY_THRESHOLD": "0.99", "IRISCTL_TRAIN_SEED": "-1"})
    proc = cli("up")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wait_state(cli, "IrisModelAccuracyLow", "firing")
    failed = cli("train", "--now")
    assert failed.returncode == 1 and "training failed" in failed.stderr
    wait_state(cli, "IrisTrainingFailed", "firing")
    history = json.loads(cli("history", "--json").stdout)
    assert [r["status"] for r in history][-1] == "FAILED"
    assert history[-2]["champion"] and history[-2]["registered_version"] == "2"
