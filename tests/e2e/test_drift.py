"""Input drift end to end on the real local target: shifted rows through `predict --file` make
IrisInputDrift fire in the real Prometheus, normal traffic resolves it; `top` and `status` show
it. Made fast through settings only (1 s scrapes, `for:` capped at 1 s, a 300-row window that
alerts from 100 rows); two API workers, so the window is the sum of theirs."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
from sklearn.datasets import load_iris

from tests.conftest import wait_until
from tests.e2e.test_alerts import states
from tests.e2e.test_local import Cli

pytestmark = pytest.mark.e2e


@pytest.fixture
def cli(tmp_path_factory):
    c = Cli(tmp_path_factory.mktemp("drift", numbered=True))
    c.env.update(
        {
            "IRISCTL_TRAIN_SEED": "1",
            "IRISCTL_SCRAPE_INTERVAL": "1s",
            "IRISCTL_ALERT_FOR_MAX": "1s",
            "IRISCTL_DRIFT_WINDOW_ROWS": "300",
            "IRISCTL_DRIFT_MIN_ROWS": "100",
            "IRISCTL_API_WORKERS": "2",
        }
    )
    yield c
    c("down", "--purge", "--yes", timeout=120)


def write_rows(path: Path, petal_length_factor: float) -> Path:
    rows = load_iris().data.copy()
    rows[:, 2] *= petal_length_factor
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([["sepal_length", "sepal_width", "petal_length", "petal_width"]])
        csv.writer(fh).writerows(rows.tolist())
    return path


def top(cli: Cli) -> dict:
    return cli.json("top")


def test_shifted_rows_fire_input_drift_and_normal_traffic_resolves_it(cli, tmp_path):
    proc = cli("up")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    normal = write_rows(tmp_path / "normal.csv", 1.0)
    shifted = write_rows(tmp_path / "shifted.csv", 2.0)  # petal lengths doubled

    # An odd flower is answered, with the reason it is odd.
    odd = cli.json("predict", "-1", "3.5", "30", "0.2")
    assert odd["prediction"] in ("setosa", "versicolor", "virginica")
    assert odd["warnings"][0] == "sepal_length -1.0 is negative: no length or width can be"
    assert odd["warnings"][1].startswith("petal_length 30.0 is outside the training range 1.0")

    # A handful of odd rows drift, but too few for the alert.
    for _ in range(4):
        cli.json("predict", "5.1", "3.5", "30", "0.2")
    few = wait_until(
        lambda: (t := top(cli))["psi"].get("petal_length", 0) > 0.2 and t, 30, 0.5, "PSI"
    )
    assert few["window_rows"] < few["min_rows"] == 100
    deadline = time.monotonic() + 5  # a few rule evaluations (1 s each): it stays inactive
    while time.monotonic() < deadline:
        assert states(cli)["IrisInputDrift"] == "inactive"
        time.sleep(0.5)

    # Shifted traffic fills the window: the alert fires on petal_length only.
    def send(path: Path) -> bool:
        answer = cli.json("predict", "--file", str(path))
        return len(answer["predictions"]) == 150

    wait_until(
        lambda: send(shifted) and states(cli)["IrisInputDrift"] == "firing",
        120,
        0.5,
        "IrisInputDrift to fire",
    )
    drifted = top(cli)
    assert drifted["psi"]["petal_length"] > 1.0
    assert max(v for k, v in drifted["psi"].items() if k != "petal_length") < 0.2
    assert drifted["window_rows"] >= 100 and drifted["out_of_range"]["petal_length"] > 0
    assert set(drifted["class_mix"]) <= {"setosa", "versicolor", "virginica"}
    assert drifted["versions"] == ["1"] and drifted["request_rate"] > 0
    assert {"name": "IrisInputDrift", "state": "firing"} in drifted["alerts"]
    alert = next(a for a in json.loads(cli("alerts", "--json").stdout) if a["state"] == "firing")
    assert alert["labels"]["feature"] == "petal_length"
    status = cli.json("status")
    assert status["traffic"]["psi"]["petal_length"] > 1.0
    assert sum(status["traffic"]["class_mix"].values()) == pytest.approx(1.0)
    text = cli("status").stdout
    assert "Drift (PSI vs training rows" in text and "Class mix (1h)" in text

    # Normal traffic pushes the shifted rows out of the window: the alert resolves.
    wait_until(
        lambda: send(normal) and states(cli)["IrisInputDrift"] == "inactive",
        120,
        0.5,
        "IrisInputDrift to resolve",
    )
    assert top(cli)["psi"]["petal_length"] < 0.2
    screen = cli("top", "--once")
    assert screen.returncode == 0 and "input drift" in screen.stdout
