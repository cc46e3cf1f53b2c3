"""`irisctl top` and the traffic part of `status`: against a loopback HTTP server that answers
Prometheus' query and rules endpoints (the end-to-end test uses the real Prometheus)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from irisctl import ops, output
from irisctl.errors import IrisctlError
from irisctl.targets.base import ServiceState
from tests.cli.test_cli import FakeTarget, run
from tests.cli.test_cli import fake as fake
from tests.cli.test_cli import home as home
from tests.conftest import free_port

# PromQL (as ops.traffic sends it, matched by a fragment) → vector result
ANSWERS = {
    'status=~"5.."': [],
    'status=~"4.."': [({}, 0.5)],
    "sum(rate(iris_api_requests_total": [({}, 10.0)],
    "histogram_quantile(0.5": [({}, 0.002)],
    "histogram_quantile(0.99": [({}, "NaN")],
    "iris_api_model_version_info": [({"version": "3"}, 1)],
    "iris_api_predictions_total": [({"class": "setosa"}, 30), ({"class": "virginica"}, 10)],
    "iris_api_feature_psi": [
        ({"feature": "petal_length"}, 1.5),
        ({"feature": "sepal_width"}, 0.01),
    ],
    "iris_api_drift_window_rows": [({}, 40)],
    "iris_api_drift_min_window_rows": [({}, 500)],
    "iris_api_drift_psi_threshold": [({}, 0.2)],
    "iris_api_drift_reference_loaded": [({}, 1)],
    "iris_api_inputs_out_of_range_total": [({"feature": "petal_length"}, 7)],
    # Feedback on the served version (v3) over the live-accuracy window: 3 of 60 labels wrong.
    'outcome="wrong",version="3"}[1h]': [({}, 3)],
    'increase(iris_api_feedback_total{version="3"}[1h]': [({}, 60)],
    'rate(iris_api_feedback_total{version="3"}[1h]': [({}, 60 / 3600)],
    "iris_api_live_accuracy_threshold": [({}, 0.9)],
    "iris_api_live_accuracy_min_labels": [({}, 50)],
}
TARGETS = [
    {"scrapePool": "iris-model-api", "health": "up", "scrapeInterval": "15s"},
    {"scrapePool": "prometheus", "health": "up", "scrapeInterval": "1m"},
]
RULES = {
    "groups": [
        {
            "rules": [
                {"type": "alerting", "name": "IrisInputDrift", "state": "pending", "labels": {}},
                {"type": "alerting", "name": "IrisModelStale", "state": "inactive", "labels": {}},
            ]
        }
    ]
}


class FakePrometheus:
    def __init__(self) -> None:
        queries = self.queries = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                if url.path == "/api/v1/rules":
                    body = {"status": "success", "data": RULES}
                elif url.path == "/api/v1/targets":  # the fields Prometheus 2.42 answers with
                    body = {"status": "success", "data": {"activeTargets": TARGETS}}
                else:
                    query = parse_qs(url.query)["query"][0]
                    queries.append(query)
                    found = next((v for k, v in ANSWERS.items() if k in query), [])
                    result = [{"metric": m, "value": [0, str(v)]} for m, v in found]
                    body = {"status": "success", "data": {"resultType": "vector", "result": result}}
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def prom(fake: FakeTarget, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePrometheus]:
    server = FakePrometheus()
    endpoint = fake.endpoint
    monkeypatch.setattr(
        fake, "endpoint", lambda s: server.url if s == "prometheus" else endpoint(s)
    )
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_top_json_is_one_snapshot_of_the_traffic(prom):
    result = run("top", "--json")
    assert result.exit_code == 0, result.output
    t = json.loads(result.output)
    assert t["request_rate"] == 10.0 and t["error_ratio"] == 0.0 and t["rejected_ratio"] == 0.05
    assert t["p50_ms"] == 2.0 and t["p99_ms"] is None  # NaN: no request in the range
    assert t["versions"] == ["3"]
    assert t["class_mix"] == {"setosa": 0.75, "virginica": 0.25}
    assert t["psi"] == {"petal_length": 1.5, "sepal_width": 0.01}
    assert t["window_rows"] == 40 and t["min_rows"] == 500 and t["psi_threshold"] == 0.2
    assert t["out_of_range"] == {"petal_length": 7}
    assert {"name": "IrisInputDrift", "state": "pending"} in t["alerts"]
    assert t["missing"] == ["the drift window holds 40 rows; alerts wait for 500"]


def test_top_says_when_the_api_holds_no_drift_reference(prom, monkeypatch):
    monkeypatch.setitem(ANSWERS, "iris_api_drift_reference_loaded", [({}, 0)])
    result = run("top", "--json")
    assert result.exit_code == 0, result.output
    (note,) = json.loads(result.output)["missing"]
    assert note.startswith("no drift reference loaded: right after a new champion")


def test_top_says_rates_need_two_scrapes_only_while_that_is_why_they_are_missing(prom, monkeypatch):
    """One scrape since the API served: the counters are there (so are PSI and the class mix)
    but rate() has one sample."""
    monkeypatch.setitem(ANSWERS, "sum(rate(iris_api_requests_total", [])
    monkeypatch.setitem(ANSWERS, "count(iris_api_requests_total)", [({}, 2)])
    t = json.loads(run("top", "--json").output)
    assert t["psi"] and t["class_mix"] and t["request_rate"] is None
    assert "request rates need two scrapes, 15 s apart" in t["missing"]
    assert not any("not scraped" in m for m in t["missing"])
    # No request counter at all: nothing scraped since the API served.
    monkeypatch.setitem(ANSWERS, "count(iris_api_requests_total)", [])
    (first, *_) = json.loads(run("top", "--json").output)["missing"]
    assert first.startswith("no request metrics yet: Prometheus has not scraped")


def test_top_once_draws_one_screen(prom):
    result = run("top", "--once")
    assert result.exit_code == 0, result.output
    for text in ("req/s", "v3", "setosa", "75%", "petal_length", "1.500", "IrisInputDrift"):
        assert text in result.output


def test_top_without_prometheus_says_what_is_missing_and_exits_1(fake):
    result = run("top", "--once")  # the fake's Prometheus URL has nothing listening
    assert result.exit_code == 1
    assert "Prometheus at http://127.0.0.1:3 is not reachable" in result.output
    assert "apt-get install prometheus" in result.output


def test_top_when_not_up_exits_3(home):
    result = run("top", "--once")
    assert result.exit_code == 3 and "irisctl up" in result.output


def test_live_top_redraws_shows_errors_and_ends_cleanly_on_ctrl_c(prom, monkeypatch):
    calls = {"n": 0}
    views: list[tuple[object, str | None]] = []
    draw = output.top_view
    monkeypatch.setattr(
        output, "top_view", lambda t, s, i, error=None: views.append((t, error)) or draw(t, s, i)
    )

    def read() -> ops.Traffic:
        calls["n"] += 1
        if calls["n"] == 2:
            raise IrisctlError("Prometheus at X is not reachable: ConnectError", "install it")
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return ops.traffic(prom.url)

    output.live_top(read, prom.url, 0.01)  # returns: Ctrl-C is the way out, not an error
    assert calls["n"] == 4 and len(views) == 3
    assert views[0][0].psi["petal_length"] == 1.5  # type: ignore[union-attr]
    assert views[1] == (None, "Prometheus at X is not reachable: ConnectError — install it")
    assert views[2][0] is not None  # back once Prometheus answers again


def test_status_shows_drift_and_the_class_mix(prom, fake, monkeypatch):
    services = fake.services()
    monkeypatch.setattr(
        fake,
        "services",
        lambda: [
            *services[:-1],
            ServiceState("prometheus", "running", prom.url, 10.0, 100),
        ],
    )
    data = json.loads(run("status", "--json").output)
    assert data["traffic"]["psi"]["petal_length"] == 1.5
    assert data["traffic"]["class_mix"] == {"setosa": 0.75, "virginica": 0.25}
    text = run("status").output
    assert "Drift (PSI vs training rows, 40 rows): petal_length" in text
    assert "Class mix (1h): setosa 75%, virginica 25%" in text


def test_status_without_prometheus_has_no_traffic(fake):
    data = json.loads(run("status", "--json").output)
    assert data["traffic"] is None and data["alerts"] is None


def test_top_and_status_show_the_served_versions_live_accuracy_and_labels_per_hour(prom, fake):
    t = json.loads(run("top", "--json").output)
    assert t["live_accuracy"] == 0.95 and t["labels_per_hour"] == 60.0
    assert t["live_accuracy_window"] == "1h"
    assert not any("label" in m for m in t["missing"])
    screen = run("top", "--once").output
    assert "live accuracy (v3, 1h)" in screen and "95.0%" in screen and "60" in screen
    serve_prometheus(fake, prom)
    traffic = json.loads(run("status", "--json").output)["traffic"]
    assert traffic["live_accuracy"] == 0.95 and traffic["labels_per_hour"] == 60.0
    assert traffic["live_accuracy_window"] == "1h"
    text = " ".join(run("status").output.split())
    assert "Live accuracy (v3, last 1h): 95.0% of 60 labels, 60 labels/h" in text


def test_no_labels_is_said_not_shown_as_100_percent(prom, fake, monkeypatch):
    monkeypatch.setitem(ANSWERS, 'outcome="wrong",version="3"}[1h]', [({}, 0)])
    monkeypatch.setitem(ANSWERS, 'increase(iris_api_feedback_total{version="3"}[1h]', [({}, 0)])
    monkeypatch.setitem(ANSWERS, 'rate(iris_api_feedback_total{version="3"}[1h]', [({}, 0)])
    t = json.loads(run("top", "--json").output)
    assert t["live_accuracy"] is None and t["labels_per_hour"] == 0.0
    assert "no labels for v3 in the last 1h: live accuracy needs `irisctl feedback`" in t["missing"]
    assert "100" not in run("top", "--once").output
    serve_prometheus(fake, prom)
    assert json.loads(run("status", "--json").output)["traffic"]["live_accuracy"] is None
    text = " ".join(run("status").output.split())
    assert "Live accuracy (v3, last 1h): no labels" in text


def test_live_accuracy_is_1_with_labels_and_no_wrong_series(prom, monkeypatch):
    monkeypatch.setitem(ANSWERS, 'outcome="wrong",version="3"}[1h]', [])
    assert json.loads(run("top", "--json").output)["live_accuracy"] == 1.0


def test_fewer_labels_than_the_alert_waits_for_is_a_note(prom, monkeypatch):
    monkeypatch.setitem(ANSWERS, 'increase(iris_api_feedback_total{version="3"}[1h]', [({}, 12)])
    t = json.loads(run("top", "--json").output)
    assert t["live_accuracy"] == 0.75
    assert "v3 has 12 labels in the last 1h; IrisLiveAccuracyLow waits for 50" in t["missing"]


def test_the_live_accuracy_window_is_the_setting(prom, monkeypatch):
    monkeypatch.setenv("IRISCTL_LIVE_ACCURACY_WINDOW", "10m")
    t = json.loads(run("top", "--json").output)
    assert t["live_accuracy_window"] == "10m"
    feedback = [q for q in prom.queries if "iris_api_feedback_total" in q]
    assert feedback and all("[10m]" in q for q in feedback)


def serve_prometheus(fake, prom) -> None:
    """The fake target's Prometheus runs (and answers at the stand-in's address)."""
    services = fake.services()
    fake.services = lambda: [
        *services[:-1],
        ServiceState("prometheus", "running", prom.url, 10.0, 100),
    ]
