"""Issue 21's loop end to end on the local target, with a real Prometheus: predictions, their
labels (most of them wrong) through `irisctl feedback --file`, IrisLiveAccuracyLow firing, and
the next training using the labelled rows. Made fast through settings only: 1 s scrapes, a 2 min
live-accuracy window, every `for:` capped at 1 s (the `for:` itself is covered by promtool)."""

from __future__ import annotations

import csv
import json

import httpx
import pytest
from sklearn.datasets import load_iris

from tests.conftest import wait_until
from tests.e2e.test_local import Cli

pytestmark = pytest.mark.e2e
ROWS = 300


@pytest.fixture
def cli(tmp_path_factory):
    c = Cli(tmp_path_factory.mktemp("feedback", numbered=True))
    c.env.update(
        {
            "IRISCTL_TRAIN_SEED": "4",
            "IRISCTL_SCRAPE_INTERVAL": "1s",
            "IRISCTL_ALERT_FOR_MAX": "1s",
            "IRISCTL_LIVE_ACCURACY_WINDOW": "2m",
        }
    )
    yield c
    c("down", "--purge", "--yes", timeout=120)


def _alert(cli: Cli, name: str) -> str | None:
    proc = cli("alerts", "--json")
    assert proc.returncode == 0, proc.stderr
    return next((a["state"] for a in json.loads(proc.stdout) if a["name"] == name), None)


def _stored_labels(cli: Cli) -> int:
    root = cli.home / "data" / "artifacts" / "feedback" / "iris-classifier"
    return sum(len(f.read_text().splitlines()) for f in root.glob("*/*.jsonl"))


def test_wrong_labels_fire_live_accuracy_low_and_the_next_training_uses_them(cli, tmp_path):
    up = cli("up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert _alert(cli, "IrisLiveAccuracyLow") == "inactive"

    iris = load_iris()
    rows = tmp_path / "rows.csv"
    rows.write_text("".join(",".join(map(str, x)) + "\n" for x in iris.data[: ROWS // 2]) * 2)
    out = tmp_path / "out.csv"
    scored = cli("predict", "--file", str(rows), "--out", str(out))
    assert scored.returncode == 0, scored.stdout + scored.stderr
    with out.open() as f:
        answered = list(csv.DictReader(f))
    assert len(answered) == ROWS and all(len(r["id"]) == 80 for r in answered)

    # Four in five labels say another class than the prediction: live accuracy 0.2.
    names = list(iris.target_names)
    labels = tmp_path / "labels.csv"
    with labels.open("w") as f:
        f.write("id,label\n")
        for n, r in enumerate(answered):
            right = r["prediction"]
            wrong = names[(names.index(right) + 1) % 3]
            f.write(f"{r['id']},{right if n % 5 == 0 else wrong}\n")
    sent = cli("feedback", "--file", str(labels), "--json")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert json.loads(sent.stdout)["accepted"] == ROWS

    wait_until(
        lambda: _alert(cli, "IrisLiveAccuracyLow") == "firing", 120, 0.5, "IrisLiveAccuracyLow"
    )
    traffic = cli.json("status")["traffic"]
    assert traffic["live_accuracy"] == pytest.approx(0.2, abs=0.05)
    assert traffic["labels_per_hour"] > 0

    # The labels reach the store (the API's flush), then the training reads them.
    wait_until(lambda: _stored_labels(cli) == ROWS, 60, 0.5, "the labels in the store")
    trained = cli("train", "--now", "--json")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    summary = json.loads(trained.stdout)["summary"]
    assert (summary["iris_rows"], summary["production_rows"]) == (150, ROWS)
    mlflow = f"http://127.0.0.1:{cli.ports['mlflow']}"
    run = httpx.get(f"{mlflow}/api/2.0/mlflow/runs/get", params={"run_id": summary["run_id"]})
    data = run.json()["run"]
    [given] = data["inputs"]["dataset_inputs"]
    params = {p["key"]: p["value"] for p in data["data"]["params"]}
    assert given["dataset"]["digest"] == params["data_digest"]
    assert given["dataset"]["name"] == f"iris+production@{params['data_digest']}"
    assert {t["key"]: t["value"] for t in given["tags"]}["production_rows"] == str(ROWS)
    history = cli.json("history")
    assert [r["production_rows"] for r in history] == [0, ROWS]  # up's first run: Iris only
