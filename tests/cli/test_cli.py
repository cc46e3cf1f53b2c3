"""The CLI's contract: exit codes, --json shapes, error messages, start-up weight.

The stack is faked at our own seam (the Target protocol, via ``targets.choose``) and the MLflow
REST reads; the end-to-end test (tests/e2e) drives the real local target.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from irisctl import cli, cli_support, ops, state, targets
from irisctl.clients.mlflow import MlflowRest, ModelInfo, RunInfo
from irisctl.errors import IrisctlError
from irisctl.targets.base import ServiceState, TrainOutcome

runner = CliRunner()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IRISCTL_HOME", str(tmp_path))
    for key in list(os.environ):
        if key.startswith("IRISCTL_") and key != "IRISCTL_HOME":
            monkeypatch.delenv(key)
    return tmp_path


class FakeTarget:
    """A target that records calls; no processes."""

    name = "local"

    def __init__(self, up: bool = True) -> None:
        self.running = up
        self.calls: list[str] = []
        self.train_outcome = TrainOutcome(
            0,
            {
                "run_id": "r1",
                "accuracy": 0.97,
                "promoted": True,
                "version": "2",
                "reason": "passed the gate",
                "champion_version": "2",
            },
            None,
        )

    def up(self, progress) -> None:
        self.calls.append("up")
        self.running = True

    def is_up(self) -> bool:
        return self.running

    def endpoint(self, service: str) -> str:
        return {
            "mlflow": "http://127.0.0.1:1",
            "model-api": "http://127.0.0.1:2",
            "prometheus": "http://127.0.0.1:3",
        }.get(service, "http://127.0.0.1:4")

    def services(self) -> list[ServiceState]:
        return [
            ServiceState(n, "running", self.endpoint(n), 10.0, 100)
            for n in ("mlflow", "model-api", "monitor")
        ] + [ServiceState("prometheus", "absent", None, detail="not installed")]

    def train(self, on_line: Callable[[str], None], attach: bool = False) -> TrainOutcome:
        self.calls.append("train")
        on_line('{"ts": "2026-01-01T00:00:00.000Z", "level": "info", "msg": "training started"}')
        return self.train_outcome

    def logs(self, service: str, follow: bool, tail: int | None) -> Iterator[str]:
        yield from [f"{service} line {i}" for i in range(5)][-(tail or 5) :]

    def render(self) -> dict[str, str]:
        return {"supervisord.conf": "[supervisord]\n"}

    def down(
        self, purge: bool, dry_run: bool = False, cluster: bool = False, progress=None
    ) -> list[str]:
        self.calls.append(f"down purge={purge}" + (" dry_run" if dry_run else ""))
        return ["stopped"]

    def cancel_training(self) -> list[str]:
        self.calls.append("cancel")
        return ["stopped the training (pid 42)"]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, home: Path) -> FakeTarget:
    target = FakeTarget()
    monkeypatch.setattr(targets, "choose", lambda config, recorded: (target, "test"))
    state.write(home, {"target": "local", "up": True, "ports": {}})
    champion = ModelInfo("iris-classifier", "2", "champion", 0.97, 1_700_000_000.0)
    monkeypatch.setattr(MlflowRest, "champion", lambda self, name, alias: champion)
    monkeypatch.setattr(MlflowRest, "latest_version", lambda self, name: "2")
    monkeypatch.setattr(MlflowRest, "alias_moves", lambda self, name, alias: [])
    monkeypatch.setattr(
        MlflowRest,
        "recent_runs",
        lambda self, exp, limit=5: [RunInfo("r1", "FINISHED", 1_700_000_000.0, 0.97, "promoted")],
    )
    return target


def run(*args: str, input: str | None = None):
    return runner.invoke(cli.app, list(args), input=input)


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and result.output.startswith("irisctl 0.")


def test_every_command_has_help_with_an_example():
    for command in cli.app.registered_commands:
        name = command.name or command.callback.__name__
        assert "Example:" in (command.callback.__doc__ or ""), name
        result = run(name, "--help")
        assert result.exit_code == 0, name


def test_every_command_is_in_the_readme():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for command in cli.app.registered_commands:
        assert f"irisctl {command.name or command.callback.__name__}" in readme


def test_every_setting_is_in_the_readmes_configuration_section():
    from irisctl import settings

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    assert [name for name in settings.DEFAULTS if f"`{name}`" not in section] == []


@pytest.mark.parametrize(
    "args",
    [
        ["1", "2", "3"],
        ["1", "2", "3", "4", "5"],
        ["abc", "2", "3", "4"],
        ["5,1", "2", "3", "4"],
        ["nan", "2", "3", "4"],
        ["inf", "2", "3", "4"],
        ["-inf", "2", "3", "4"],
        ["1e999", "2", "3", "4"],
        ["0x10", "2", "3", "4"],
        ["", "2", "3", "4"],
        [],
    ],
)
def test_a1_a2_predict_bad_input_exits_2_before_any_request(fake, monkeypatch, args):
    sent = []
    monkeypatch.setattr("irisctl.clients.web.predict", lambda *a, **k: sent.append(a) or {})
    result = run("predict", *args)
    assert result.exit_code == 2, result.output
    assert "Error:" in result.output and "Traceback" not in result.output
    assert sent == []


def test_predict_json_prints_the_api_answer(fake, monkeypatch):
    answer = {
        "prediction": "setosa",
        "class_index": 0,
        "probabilities": {"setosa": 1.0, "versicolor": 0.0, "virginica": 0.0},
        "model": {"name": "iris-classifier", "version": "2"},
    }
    sent = []
    monkeypatch.setattr(
        "irisctl.clients.web.predict",
        lambda url, payload, **k: sent.append((url, payload)) or answer,
    )
    result = run("predict", "5.1", "3.5", "1.4", "0.2", "--json")
    assert result.exit_code == 0
    assert json.loads(result.output) == answer
    assert sent == [("http://127.0.0.1:2", {"features": [5.1, 3.5, 1.4, 0.2]})]
    assert run("predict", "5.1", "3.5", "1.4", "0.2").exit_code == 0


def test_predict_negative_numbers_are_features_not_options(fake, monkeypatch):
    sent = []
    monkeypatch.setattr(
        "irisctl.clients.web.predict",
        lambda url, payload, **k: sent.append(payload) or {"predictions": [], "model": {}},
    )
    assert run("predict", "-1", "2", "3", "4", "--json").exit_code == 0
    assert sent == [{"features": [-1.0, 2.0, 3.0, 4.0]}]


def test_predict_file_sends_a_batch(fake, monkeypatch, tmp_path):
    csv = tmp_path / "rows.csv"
    csv.write_text(
        "sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n6.3,3.3,6.0,2.5\n"
    )
    sent = []
    monkeypatch.setattr(
        "irisctl.clients.web.predict",
        lambda url, payload, **k: sent.append(payload) or {"predictions": [], "model": {}},
    )
    assert run("predict", "--file", str(csv), "--json").exit_code == 0
    assert sent == [{"instances": [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]}]
    csv.write_text("5.1,3.5,1.4\n")
    result = run("predict", "--file", str(csv))
    assert result.exit_code == 2 and "row 1" in result.output


def test_predict_when_not_up_exits_3(home):
    result = run("predict", "5.1", "3.5", "1.4", "0.2")
    assert result.exit_code == 3 and "irisctl up" in result.output


def test_status_when_not_up_exits_3(home):
    result = run("status")
    assert result.exit_code == 3 and "not up" in result.output


def test_status_json_shape(fake):
    result = run("status", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["target"] == "local"
    assert data["services"]["mlflow"] == {
        "state": "running",
        "url": "http://127.0.0.1:1",
        "page": "http://127.0.0.1:1",
        "uptime_s": 10.0,
        "pid": 100,
        "detail": "",
    }
    assert data["model"] == {
        "name": "iris-classifier",
        "version": "2",
        "alias": "champion",
        "accuracy": 0.97,
        "registered_at": 1_700_000_000.0,
    }
    assert data["alerts"] is None and "prometheus" in data["alerts_reason"]
    assert data["runs"][0]["gate"] == "promoted"


def test_status_degraded_exits_1(fake, monkeypatch):
    monkeypatch.setattr(
        FakeTarget,
        "services",
        lambda self: [
            ServiceState("mlflow", "running", "u"),
            ServiceState("model-api", "fatal", "u"),
        ],
    )
    assert run("status").exit_code == 1


def test_status_with_mlflow_unreachable_still_reports(fake, monkeypatch):
    def boom(self, *a, **k):
        raise IrisctlError("MLflow at http://127.0.0.1:1 is not reachable")

    monkeypatch.setattr(MlflowRest, "champion", boom)
    result = run("status", "--json")
    data = json.loads(result.output)
    assert data["model"] is None and "not reachable" in data["model_error"]


def test_c4_status_notes_a_version_registered_but_never_promoted(fake, monkeypatch):
    monkeypatch.setattr(MlflowRest, "latest_version", lambda self, name: "3")
    data = json.loads(run("status", "--json").output)
    assert data["model"]["version"] == "2"
    assert data["notes"] and "version 3 is registered but not champion" in data["notes"][0]
    assert "Note:" in run("status").output


def test_train_requires_now(fake):
    result = run("train")
    assert result.exit_code == 2 and "--now" in result.output
    assert fake.calls == []


def test_train_now_streams_and_summarises(fake):
    result = run("train", "--now")
    assert result.exit_code == 0
    assert "training started" in result.output and "version 2" in result.output
    data = json.loads(run("train", "--now", "--json").stdout)
    assert data["summary"]["version"] == "2" and data["exit_code"] == 0


def test_train_failure_exits_1(fake):
    fake.train_outcome = TrainOutcome(1, None, "MLflow did not answer")
    result = run("train", "--now")
    assert result.exit_code == 1 and "MLflow did not answer" in result.output


def test_train_when_not_up_exits_3(fake):
    fake.running = False
    assert run("train", "--now").exit_code == 3


def test_logs(fake):
    result = run("logs", "model-api", "--tail", "2")
    assert result.exit_code == 0 and result.output.splitlines() == [
        "model-api line 3",
        "model-api line 4",
    ]
    assert run("logs", "nope").exit_code == 2


def test_down_purge_needs_yes_without_a_terminal(fake):
    result = run("down", "--purge")
    assert result.exit_code == 2 and "--yes" in result.output
    assert fake.calls == []
    assert run("down", "--purge", "--yes").exit_code == 0
    assert fake.calls == ["down purge=True"]


def test_down_keeps_data_by_default(fake):
    assert run("down").exit_code == 0 and fake.calls == ["down purge=False"]


def test_down_dry_run_needs_no_confirmation(fake):
    assert run("down", "--purge", "--dry-run").exit_code == 0
    assert fake.calls == ["down purge=True dry_run"]


def test_render_json(fake):
    result = run("render", "--json")
    assert json.loads(result.output) == {"supervisord.conf": "[supervisord]\n"}


def test_unknown_targets_and_render_without_a_cluster(home, monkeypatch):
    result = run("--target", "nomad", "render")
    assert result.exit_code == 2 and "unknown target" in result.output
    monkeypatch.setenv("PATH", "/nonexistent")
    result = run("--target", "minikube", "up")
    assert result.exit_code == 1 and "minikube is not installed" in result.output
    result = run("--target", "minikube", "render")
    assert result.exit_code == 0 and "name: ml-model-training" in result.output


def test_bad_config_value_is_a_usage_error(home, monkeypatch):
    monkeypatch.setenv("IRISCTL_API_PORT", "99999")
    result = run("render")
    assert result.exit_code == 2 and "IRISCTL_API_PORT" in result.output
    (home / "config.toml").write_text("api_prot = 1\n")
    monkeypatch.delenv("IRISCTL_API_PORT")
    result = run("render")
    assert result.exit_code == 2 and "unknown settings" in result.output


def test_doctor_json(home):
    result = run("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(result.output)}
    assert checks["python"]["level"] == "ok"
    assert {"supervisord", "prometheus", "IRISCTL_HOME", "minikube"} <= set(checks)
    assert all({"name", "level", "detail", "fix"} <= set(c) for c in checks.values())


def test_doctor_reports_a_busy_port_with_its_fix(home, monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        monkeypatch.setenv("IRISCTL_API_PORT", str(s.getsockname()[1]))
        result = run("doctor", "--json")
    assert result.exit_code == 1
    busy = [c for c in json.loads(result.output) if c["level"] == "fail"]
    assert busy and "--api-port" in busy[0]["fix"]


def test_settings_precedence(home, monkeypatch):
    from irisctl import settings

    (home / "config.toml").write_text("api_port = 7001\nmonitor_port = 7002\nmlflow_port = 7003\n")
    monkeypatch.setenv("IRISCTL_MONITOR_PORT", "7102")
    recorded = {"up": True, "ports": {"mlflow": 7203, "api": 7201}}
    config = settings.load({"api_port": 7301}, home=home, recorded=recorded)
    assert (config["api_port"], config.source("api_port")) == (7301, "flag")
    assert config["monitor_port"] == 7102 and config.source("monitor_port").startswith("env")
    assert config["mlflow_port"] == 7203 and "running stack" in config.source("mlflow_port")
    assert config["prometheus_port"] == 9090 and config.source("prometheus_port") == "default"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("live_accuracy_window", "0s"),
        ("live_accuracy_window", "an hour"),
        ("live_accuracy_min_labels", "0"),
        ("feedback_max_age_days", "-1"),
    ],
)
def test_a_bad_feedback_setting_is_refused_with_its_name(home, monkeypatch, name, value):
    """A zero window would be a rules file Prometheus refuses ("duration must be greater than
    0"), so no alert at all."""
    from irisctl import settings
    from irisctl.errors import BadInput

    monkeypatch.setenv(f"IRISCTL_{name.upper()}", value)
    with pytest.raises(BadInput, match=name):
        settings.load(home=home)


def test_importing_the_cli_loads_no_heavy_sdk():
    code = (
        "import sys, irisctl.cli; heavy = [m for m in ('mlflow', 'kubernetes', 'docker', "
        "'sklearn', 'pandas', 'boto3') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_help_loads_no_heavy_sdk():
    code = (
        "import sys; sys.argv = ['irisctl', '--help']\n"
        "from irisctl import cli\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "print([m for m in ('mlflow', 'kubernetes', 'docker', 'sklearn') if m in sys.modules],"
        " file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stderr.strip().splitlines()[-1] == "[]", out.stderr


def test_the_importtime_check_prints_nothing():
    """`python -X importtime -m irisctl --help 2>&1 | grep -E ...` prints nothing: the import
    lines and the help text together."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "irisctl", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    both = out.stdout + out.stderr
    assert not [ln for ln in both.splitlines() if re.search("mlflow|kubernetes|docker|sklearn", ln)]


def test_target_names_are_case_insensitive(home):
    from irisctl import settings

    assert settings.load({"target": "Kubernetes"}, home=home)["target"] == "kubernetes"


def test_ops_parse_features_accepts_plain_numbers():
    assert ops.parse_features(["5.1", "3.5", "1.4", "0.2"]) == [5.1, 3.5, 1.4, 0.2]
    assert ops.parse_features(["5", "-3", "1e-1", "+2"]) == [5.0, -3.0, 0.1, 2.0]


def test_alerts_json_and_table(fake, monkeypatch):
    from irisctl.clients import prometheus

    found = [
        prometheus.Alert(
            "IrisModelStale",
            "firing",
            "warning",
            1_700_000_000.0,
            "No new model for 2d",
            "…",
            "http://127.0.0.1:8080/runbooks#runbook-irismodelstale",
        ),
        prometheus.Alert("IrisMonitorDown", "inactive", "critical"),
    ]
    monkeypatch.setattr(prometheus, "alerts", lambda url, timeout_s=3.0: found)
    data = json.loads(run("alerts", "--json").output)
    assert [(a["name"], a["state"]) for a in data] == [
        ("IrisModelStale", "firing"),
        ("IrisMonitorDown", "inactive"),
    ]
    assert data[0]["runbook_url"].endswith("#runbook-irismodelstale") and data[0]["since"]
    assert "IrisModelStale" in run("alerts").output


def test_alerts_with_prometheus_unreachable_exits_1(fake, monkeypatch):

    result = run("alerts")
    assert result.exit_code == 1 and "not reachable" in result.output  # nothing listens on :3


def test_history_marks_the_champion_and_plots(fake, monkeypatch, tmp_path):
    monkeypatch.setattr(
        MlflowRest,
        "recent_runs",
        lambda self, exp, limit=5: [
            RunInfo("r3", "FAILED", 1_700_000_300.0, None, None),
            RunInfo("r2", "FINISHED", 1_700_000_200.0, 0.93, "rejected"),
            RunInfo("r1", "FINISHED", 1_700_000_100.0, 0.97, "promoted", "2"),
        ],
    )
    rows = json.loads(run("history", "--json").output)
    assert [r["run_id"] for r in rows] == ["r1", "r2", "r3"]  # oldest first
    assert [r["champion"] for r in rows] == [True, False, False]
    png = tmp_path / "acc.png"
    result = run("history", "--plot", str(png))
    assert (result.exit_code == 0 and "▇" in result.output) or "█" in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run("history", "--plot", str(tmp_path / "acc.jpg")).exit_code == 2


def test_history_shows_each_runs_dataset_rows_and_nothing_for_older_runs(fake, monkeypatch):
    monkeypatch.setattr(
        MlflowRest,
        "recent_runs",
        lambda self, exp, limit=5: [
            RunInfo("r2", "FINISHED", 1_700_000_200.0, 0.95, "promoted", "2", 150, 1_234),
            RunInfo("r1", "FINISHED", 1_700_000_100.0, 0.97, "promoted", "1"),  # before issue 21
        ],
    )
    rows = json.loads(run("history", "--json").output)
    assert [(r["iris_rows"], r["production_rows"]) for r in rows] == [(None, None), (150, 1_234)]
    result = run("history")
    assert result.exit_code == 0, result.output
    table = [line for line in result.output.splitlines() if line.startswith("│ 20")]
    assert "150+1,234" in table[1] and "+" not in table[0]


def test_mlflow_rest_reads_the_dataset_rows_a_run_logged(mlflow_server, request):
    """Over MLflow's REST API (a real server): the params `iris_rows` and `production_rows`."""
    from mlflow import MlflowClient

    name = "history-rows-" + request.node.name[-20:]
    client = MlflowClient(mlflow_server.url)
    experiment = client.create_experiment(name)
    old = client.create_run(experiment)
    client.set_terminated(old.info.run_id)
    new = client.create_run(experiment)
    client.log_param(new.info.run_id, "iris_rows", "150")
    client.log_param(new.info.run_id, "production_rows", "0")
    client.set_terminated(new.info.run_id)
    runs = {r.run_id: r for r in MlflowRest(mlflow_server.url).recent_runs(name)}
    assert (runs[new.info.run_id].iris_rows, runs[new.info.run_id].production_rows) == (150, 0)
    assert (runs[old.info.run_id].iris_rows, runs[old.info.run_id].production_rows) == (None, None)


def test_d1_status_with_prometheus_blackholed_is_bounded_and_says_why(fake, monkeypatch):
    """RELIABILITY D1: a Prometheus that accepts and never answers."""
    import socket
    import time

    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen()
        port = hole.getsockname()[1]
        monkeypatch.setattr(
            FakeTarget,
            "services",
            lambda self: [
                ServiceState("mlflow", "running", "u"),
                ServiceState("model-api", "running", "u"),
                ServiceState("prometheus", "running", f"http://127.0.0.1:{port}"),
            ],
        )
        monkeypatch.setattr(FakeTarget, "endpoint", lambda self, s: f"http://127.0.0.1:{port}")
        started = time.monotonic()
        result = run("status", "--json")
        elapsed = time.monotonic() - started
    assert elapsed < 5, elapsed
    data = json.loads(result.output)
    assert data["alerts"] is None and "not reachable" in data["alerts_reason"]
    assert "Traceback" not in result.output


def test_up_says_when_the_threshold_is_above_what_the_data_allows(fake, monkeypatch):
    fake.running = False
    monkeypatch.setattr(MlflowRest, "champion", lambda self, name, alias: None)
    monkeypatch.setattr(
        MlflowRest,
        "recent_runs",
        lambda self, exp, limit=5: [RunInfo("r1", "FINISHED", 1_700_000_000.0, 0.9667, "rejected")],
    )
    fake.train_outcome = TrainOutcome(
        0,
        {
            "run_id": "r1",
            "accuracy": 0.9667,
            "promoted": False,
            "version": None,
            "reason": "accuracy 0.9667 is below the threshold 0.99",
            "champion_version": None,
        },
        None,
    )
    # No model API listens behind the fake target: its liveness check passes here.
    monkeypatch.setattr(ops, "_wait_ready", lambda *args, **kwargs: None)
    result = run("up", "--threshold", "0.99")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "threshold 0.99 is above what the data allows" in text
    assert "best accuracy reached on the held-out rows is 0.9667" in text
    # The MLflow UI link opens the experiment as model training, not in GenAI mode.
    monkeypatch.setattr(MlflowRest, "experiment_id", lambda self, name: "1")
    urls = json.loads(run("up", "--json").stdout)["urls"]
    assert urls["mlflow ui"] == "http://127.0.0.1:1/#/experiments/1?workflowType=machine_learning"
    # Printed whole on an 80-column console (a table cut it to "…workflowType=machine_…").
    assert re.search(rf"mlflow ui +{re.escape(urls['mlflow ui'])}\n", run("up").output)


class MlflowTarget(FakeTarget):
    """A fake target in front of a real MLflow server (the API: nothing listens)."""

    def __init__(self, mlflow_url: str) -> None:
        super().__init__()
        self.mlflow_url = mlflow_url

    def endpoint(self, service: str) -> str:
        return self.mlflow_url if service == "mlflow" else super().endpoint(service)

    def secrets(self) -> dict[str, str]:
        from iris_services.common import signing

        # The key the session's trainers sign with (tests/conftest.py: signing_key).
        return {signing.SECRET_KEY: Path(os.environ[signing.KEY_FILE_ENV]).read_text().strip()}


def test_promote_rollback_and_history_through_the_cli(own_mlflow_server, monkeypatch, home, capsys):
    from iris_services.common.settings import TrainerSettings
    from iris_services.train import publish

    monkeypatch.setenv("MLFLOW_TRACKING_URI", own_mlflow_server.url)
    monkeypatch.setenv("IRIS_WAIT_FOR_MLFLOW_SECONDS", "5")
    for seed in ("4", "1"):  # 0.933 each: a tie goes to the newer model
        monkeypatch.setenv("IRIS_SEED", seed)
        publish.run(TrainerSettings())
    target = MlflowTarget(own_mlflow_server.url)
    monkeypatch.setattr(targets, "choose", lambda config, recorded: (target, "test"))
    state.write(home, {"target": "local", "up": True, "ports": {}})
    monkeypatch.setenv("IRISCTL_POLL_SECONDS", "0.1")

    result = run("rollback", "--json")
    assert result.exit_code == 0, result.output
    moved = json.loads(result.stdout)
    assert (moved["from_version"], moved["to_version"], moved["reason"]) == ("2", "1", "rollback")
    rest = MlflowRest(own_mlflow_server.url)
    assert rest.champion("iris-classifier", "champion").version == "1"

    # v2 is newer than the champion but was champion once: no "registered but never promoted".
    assert json.loads(run("status", "--json").stdout)["notes"] == []
    result = run("rollback")
    assert result.exit_code == 1 and "no previous champion" in result.output
    result = run("promote", "1")
    assert result.exit_code == 1 and "already the champion" in result.output
    for bad in ("9", "x"):
        result = run("promote", bad)
        assert result.exit_code == 2, result.output
    assert rest.champion("iris-classifier", "champion").version == "1"  # unmoved

    result = run("promote", "2")
    assert result.exit_code == 0 and "v1 → v2" in result.output, result.output
    result = run("history")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│ v")]
    assert [r.split("│")[1].strip() for r in rows] == ["v1", "v2", "v1", "v2"]
    assert "rollback" in result.output and "manual" in result.output and "now" in result.output


@pytest.mark.parametrize(
    ("key", "value"),
    [("IRISCTL_PROMOTION_TOLERANCE", "1.5"), ("IRISCTL_MLFLOW_TELEMETRY", "maybe")],
)
def test_bad_promotion_tolerance_or_telemetry_switch_is_a_usage_error(
    home, monkeypatch, key, value
):
    monkeypatch.setenv(key, value)
    result = run("render")
    assert result.exit_code == 2 and key.removeprefix("IRISCTL_").lower() in result.output


@pytest.mark.parametrize(
    ("after", "before"),
    [
        (["up", "--target", "minikube"], ["--target", "minikube", "up"]),
        (["up", "--target=local", "-v"], ["--target=local", "-v", "up"]),
        (
            ["logs", "trainer", "-f", "--namespace", "x"],
            ["--namespace", "x", "logs", "trainer", "-f"],
        ),
        (["-v", "status", "--json", "--verbose"], ["-v", "--verbose", "status", "--json"]),
        # the verb's own option values and everything after `--` stay where they are
        (["history", "--plot", "--target"], ["history", "--plot", "--target"]),
        (["predict", "--", "-1", "--target", "x"], ["predict", "--", "-1", "--target", "x"]),
        (["nosuchverb", "--target", "x"], ["nosuchverb", "--target", "x"]),
    ],
)
def test_global_options_after_the_verb_move_before_it(after, before):
    from typer.main import get_command

    assert cli_support.hoist_global_options(get_command(cli.app), after) == before


def test_global_options_work_after_the_verb(home):
    assert run("render", "--target", "local", "--json").stdout == (
        run("--target", "local", "render", "--json").stdout
    )
    late = run("render", "--target", "nowhere", "-v")
    assert late.exit_code == 2 and "unknown target 'nowhere'" in late.output
    assert "Traceback" in late.output  # -v after the verb shows the traceback too


def test_help_shows_what_a_user_types_not_python_types():
    from typer.main import get_command

    group = get_command(cli.app)
    for name in ["", *group.commands]:  # type: ignore[attr-defined]
        text = run(*([name] if name else []), "--help").output
        labels = re.findall(r"<(?:bool|int|float|str|path|list\[[a-z]+\])>", text)
        assert not labels, f"irisctl {name} --help shows {labels}"
    up_help = run("up", "--help").output
    assert re.search(r"--api-port\s+PORT", up_help) and re.search(r"--json\s+Print", up_help)
    assert "F1 F2 F3 F4" in run("predict", "--help").output


def test_predict_features_and_file_is_an_error_with_its_hint(fake, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("5.1,3.5,1.4,0.2\n")
    result = run("predict", "--file", str(rows), "5", "1", "1", "1")
    assert result.exit_code == 2
    assert "Error: give either 4 features or --file" in result.output
    assert "Hint: irisctl predict 5.1 3.5 1.4 0.2" in result.output


def test_status_json_when_down_prints_the_shape_with_services_stopped_and_exits_3(home):
    result = run("status", "--json")
    assert result.exit_code == 3
    data = json.loads(result.stdout)
    assert set(data) >= {"target", "services", "model", "alerts"}
    assert {"mlflow", "trainer", "model-api", "monitor", "prometheus"} <= set(data["services"])
    assert {s["state"] for s in data["services"].values()} == {"stopped"}
    assert data["model"] is None and data["alerts"] is None


def test_ctrl_c_during_train_says_the_training_goes_on_and_how_to_stop_it(fake, monkeypatch):
    def interrupted(on_line, attach=False):
        raise KeyboardInterrupt

    monkeypatch.setattr(fake, "train", interrupted)
    result = run("train", "--now")
    assert result.exit_code == 130
    assert "irisctl logs trainer -f" in result.output
    assert "irisctl train --cancel" in result.output


def test_ctrl_c_during_up_says_what_was_left_and_how_to_stop_or_continue(fake, monkeypatch):
    def interrupted(progress):
        progress("mlflow", "waiting")
        progress("model-api", "waiting")
        progress("mlflow", "healthy")
        raise KeyboardInterrupt

    monkeypatch.setattr(fake, "up", interrupted)
    result = run("up")
    assert result.exit_code == 130
    assert "interrupted while: model-api (waiting)" in result.output
    assert "mlflow (waiting)" not in result.output
    assert "irisctl down" in result.output and "irisctl up" in result.output


def test_train_cancel_stops_the_running_training(fake):
    result = run("train", "--cancel")
    assert result.exit_code == 0 and "stopped the training (pid 42)" in result.output
    assert fake.calls == ["cancel"]
    assert run("train", "--now", "--cancel").exit_code == 2
    fake.running = False
    assert run("train", "--cancel").exit_code == 3


def test_messages_round_accuracy_json_keeps_it_whole(fake):
    fake.train_outcome = TrainOutcome(
        0,
        {
            "run_id": "r9",
            "accuracy": 0.9333333333333333,
            "promoted": False,
            "reason": "accuracy 0.933 is worse than champion v1 (0.967)",
            "champion_version": "1",
        },
        None,
    )
    text = run("train", "--now").output
    assert "accuracy 0.933 →" in text and "0.9333" not in text
    data = json.loads(run("train", "--now", "--json").stdout)
    assert data["summary"]["accuracy"] == 0.9333333333333333


def test_up_prints_a_try_command_that_works_from_here(monkeypatch, tmp_path):
    from irisctl import output

    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    exe = venv_bin / "irisctl"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(exe)])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # the venv is not activated
    assert output.command_name() == ".venv/bin/irisctl"
    monkeypatch.setenv("PATH", f"{venv_bin}:/usr/bin:/bin")  # it is
    assert output.command_name() == "irisctl"


def test_doctor_checks_the_alertmanager_binary(home, monkeypatch):
    checks = {c["name"]: c for c in json.loads(run("doctor", "--json").stdout)}
    assert "alertmanager" in checks
    monkeypatch.setenv("PATH", "/nonexistent")
    missing = {c["name"]: c for c in json.loads(run("doctor", "--json").stdout)}["alertmanager"]
    assert missing["level"] == "warn" and "prometheus-alertmanager" in missing["fix"]


def test_doctor_warns_that_minikubes_default_cni_does_not_enforce_network_policies(home):
    checks = {
        c["name"]: c for c in json.loads(run("--target", "minikube", "doctor", "--json").stdout)
    }
    policy = checks["network policy"]
    assert policy["level"] == "warn" and "does not enforce" in policy["detail"]
    assert "start --driver=docker --cni=calico" in policy["fix"]
    local = {c["name"] for c in json.loads(run("--target", "local", "doctor", "--json").stdout)}
    assert "network policy" not in local


class _DockerInfo(http.server.BaseHTTPRequestHandler):
    """The Docker Engine API's ``GET /_ping``, ``/version`` and ``/info`` (docs.docker.com/
    reference/api/engine: ``MemTotal`` in bytes), as much as docker-py's ``from_env()``,
    ``ping()`` and ``info()`` ask; ``mem_total`` is the memory Docker (Desktop's VM) has."""

    mem_total = 0

    def do_GET(self) -> None:
        path = self.path.split("?")[0].rsplit("/", 1)[-1]
        body: object = {
            "_ping": "OK",
            "version": {"ApiVersion": "1.45", "Version": "26.1.5", "MinAPIVersion": "1.24"},
            "info": {"MemTotal": self.mem_total, "NCPU": 2, "OperatingSystem": "Docker Desktop"},
        }.get(path)
        if body is None:
            self.send_error(404)
            return
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain" if path == "_ping" else "application/json")
        self.send_header("Api-Version", "1.45")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("docker_mib", "minikube_mb", "level", "api_pods"),
    [
        (2048, 4096, "fail", "1"),
        (8192, 3000, "warn", "1"),
        (8192, 4096, "ok", "1"),
        (8192, 4096, "warn", "4"),  # three more model-API pods need more than the default node
        (8192, 4096, "warn", "1..4"),  # as many as the autoscaler may make
    ],
)
def test_doctor_on_minikube_checks_dockers_memory(
    home, monkeypatch, docker_mib, minikube_mb, level, api_pods
):
    """Over HTTP, docker-py to a Docker Engine API stand-in that says how much memory Docker
    has: Docker Desktop's default VM is smaller than minikube's 4096 MB, and minikube refuses;
    every model-API pod the settings allow counts."""
    setting = "IRISCTL_API_AUTOSCALE" if ".." in api_pods else "IRISCTL_API_REPLICAS"
    monkeypatch.setenv(setting, api_pods)
    handler = type("Info", (_DockerInfo,), {"mem_total": docker_mib * 2**20})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("IRISCTL_MINIKUBE_MEMORY_MB", str(minikube_mb))
        result = run("--target", "minikube", "doctor", "--json")
    finally:
        server.shutdown()
    check = {c["name"]: c for c in json.loads(result.stdout)}["docker memory"]
    assert check["level"] == level, check
    assert f"{docker_mib} MiB" in check["detail"] + check["fix"]
    if level == "fail":
        assert "IRISCTL_MINIKUBE_MEMORY_MB" in check["fix"] and "Resources" in check["fix"]


def test_promote_refuses_a_version_our_trainer_did_not_sign_even_with_force(
    own_mlflow_server, monkeypatch, home
):
    from mlflow import MlflowClient

    from iris_services.common.settings import TrainerSettings
    from iris_services.train import publish

    monkeypatch.setenv("MLFLOW_TRACKING_URI", own_mlflow_server.url)
    monkeypatch.setenv("IRIS_WAIT_FOR_MLFLOW_SECONDS", "5")
    publish.run(TrainerSettings())
    # Someone with MLflow access registers our own v1's model again, as v2, without the key.
    client = MlflowClient(own_mlflow_server.url, own_mlflow_server.url)
    v1 = client.get_model_version("iris-classifier", "1")
    model_id = v1.source.removeprefix("models:/")
    client.create_model_version("iris-classifier", v1.source, run_id=v1.run_id, model_id=model_id)
    target = MlflowTarget(own_mlflow_server.url)
    monkeypatch.setattr(targets, "choose", lambda config, recorded: (target, "test"))
    state.write(home, {"target": "local", "up": True, "ports": {}})
    result = run("promote", "2", "--force")
    assert result.exit_code == 1, result.output
    assert "version 2 is refused: version 2 is not signed" in result.output
    assert "Traceback" not in result.output
    # A stack without a key (never `up`ed since this change) checks nothing: it says so.
    monkeypatch.setattr(MlflowTarget, "secrets", lambda self: {})
    result = run("rollback")
    assert result.exit_code == 1 and "no signing key" in result.output
    assert MlflowRest(own_mlflow_server.url).champion("iris-classifier", "champion").version == "1"


def test_strings_from_mlflow_print_as_text_never_as_markup_or_escapes(
    own_mlflow_server, monkeypatch, home
):
    """Issue 25 item 8: anyone who reaches MLflow writes tags; `status` prints a run's gate tag
    literally (no Rich markup, no terminal escape sequence), and an error text with markup
    does not break the error line."""
    from mlflow import MlflowClient

    from iris_services.common.settings import TrainerSettings
    from iris_services.train import publish

    monkeypatch.setenv("MLFLOW_TRACKING_URI", own_mlflow_server.url)
    monkeypatch.setenv("IRIS_WAIT_FOR_MLFLOW_SECONDS", "5")
    summary = publish.run(TrainerSettings())
    hostile = "[bold red]pwned[/] [link=http://evil.test]click[/link]\x1b]0;title\x07\x1b[2J!"
    MlflowClient(own_mlflow_server.url).set_tag(summary.run_id, "gate", hostile)
    target = MlflowTarget(own_mlflow_server.url)
    monkeypatch.setattr(targets, "choose", lambda config, recorded: (target, "test"))
    state.write(home, {"target": "local", "up": True, "ports": {}})
    result = run("status")
    assert "\x1b" not in result.output and "\x07" not in result.output
    # literally, in the gate cell (cut to the column by the table, not by markup)
    assert "[bold red]pwned[/]" in result.output, result.output
    assert "[link=http://evil.test]click" in result.output, result.output

    def broken(config):
        raise IrisctlError("MLflow said: [/] [bold]no", "see [red]this[/red]")

    monkeypatch.setattr(ops, "alerts", broken)
    result = run("alerts")
    assert result.exit_code == 1
    assert "MLflow said: [/] [bold]no" in result.output and "see [red]this[/red]" in result.output
    assert "Traceback" not in result.output
