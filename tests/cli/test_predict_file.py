"""`irisctl predict --file IN --out OUT` (issue 20): a file of any size through the real model API.

The API is the real app over real HTTP (uvicorn), serving real ONNX graphs from the registry fake
of test_api; chunks of a few hundred rows make every run several requests, so ordering, the
in-flight window and the answers' versions are all exercised.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from iris_services.api.app import create_app
from iris_services.api.model_holder import ModelHolder
from iris_services.common.settings import ApiSettings
from irisctl import state
from irisctl.cli import app
from irisctl.clients import web
from tests.cli.api_standin import as_the_stacks_api
from tests.conftest import wait_until
from tests.services.test_api import FakeRegistry, LiveServer

runner = CliRunner()


def rows_csv(path: Path, n: int, header: bool = True, seed: int = 0) -> list[list[str]]:
    rnd = random.Random(seed)
    rows = [
        [f"{rnd.uniform(4, 8):.2f}", f"{rnd.uniform(2, 4.5):.2f}", f"{rnd.uniform(1, 7):.2f}",
         f"{rnd.uniform(0.1, 2.5):.2f}"]
        for _ in range(n)
    ]  # fmt: skip
    for row in rows[499::500]:  # a negative width: answered, with a warning
        row[1] = "-0.50"
    with path.open("w") as fh:
        if header:
            fh.write("sepal_length,sepal_width,petal_length,petal_width\n")
        fh.writelines(",".join(r) + "\n" for r in rows)
    return rows


class Api:
    """The real API app over HTTP, its holder at hand to swap champions mid-run."""

    def __init__(self, **limits: int) -> None:
        self.registry = FakeRegistry()
        self.registry.promote("1")
        self.holder = ModelHolder(self.registry)
        self.holder.refresh()
        settings = ApiSettings(**limits) if limits else ApiSettings()
        self.app = create_app(settings, self.holder, poll=False)
        self.server = LiveServer(self.app)

    def promote(self, version: str) -> None:
        self.registry.promote(version, seed=7)
        assert self.holder.refresh()


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    served = Api()
    with as_the_stacks_api(monkeypatch, tmp_path, served.server) as url:
        served.url = url  # type: ignore[attr-defined]
        yield served


def score(*args: str, stdin: str | None = None):
    return runner.invoke(app, ["predict", *args], input=stdin)


def read_out(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_a_file_scores_in_input_order_over_several_requests(api, tmp_path):
    rows = rows_csv(tmp_path / "in.csv", 3_000)
    out = tmp_path / "scores.csv"
    result = score("--file", str(tmp_path / "in.csv"), "--out", str(out), "--chunk-rows", "250")
    assert result.exit_code == 0, result.output
    got = read_out(out)
    assert [[r[k] for k in ("sepal_length", "sepal_width", "petal_length", "petal_width")]
            for r in got] == rows  # fmt: skip
    # The same answers as the JSON contract gives for the same rows, row by row.
    with TestClient(api.app) as client:
        expected = client.post(
            "/predict", json={"instances": [[float(c) for c in r] for r in rows[:1000]]}
        ).json()["predictions"]
    assert [r["prediction"] for r in got[:1000]] == [e["prediction"] for e in expected]
    assert [float(r["virginica"]) for r in got[:1000]] == [
        e["probabilities"]["virginica"] for e in expected
    ]
    assert {r["model_version"] for r in got} == {"1"}
    # Rows outside the training range say so, as the JSON answer's warnings do.
    assert [r["warnings"] for r in got[:1000]] == [
        "; ".join(e.get("warnings", [])) for e in expected
    ]
    assert sum(bool(r["warnings"]) for r in got) == 6
    assert "Scored 3,000 rows" in result.output and "model v1" in result.output
    assert "changed" not in result.output
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # as `>` would leave it, not 0600


def test_json_lines_by_extension_and_stdin(api, tmp_path):
    rows = rows_csv(tmp_path / "in.csv", 700, header=False)
    out = tmp_path / "scores.jsonl"
    stdin = (tmp_path / "in.csv").read_text()
    result = score("--file", "-", "--out", str(out), "--chunk-rows", "200", "--json", stdin=stdin)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["petal_length"] for r in records] == [float(r[2]) for r in rows]
    assert set(records[0]) >= {"prediction", "setosa", "versicolor", "virginica", "model_version",
                               "warnings"}  # fmt: skip
    assert json.loads(result.stdout)["rows"] == 700


def test_a_bad_row_stops_with_its_line_and_writes_nothing(api, tmp_path):
    rows_csv(tmp_path / "in.csv", 2_000)
    with (tmp_path / "in.csv").open("a") as fh:
        fh.write("5.1,3.5,oops,0.2\n")
    out = tmp_path / "scores.csv"
    result = score("--file", str(tmp_path / "in.csv"), "--out", str(out), "--chunk-rows", "300")
    assert result.exit_code == 2
    assert "line 2002: not a number: 'oops'" in result.output
    assert "--skip-bad" in result.output
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_skip_bad_sets_bad_rows_aside_and_goes_on(api, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("1,2,3,4\n5.1,3.5,1.4\n6,3,5,2\nnan,1,1,1\n5,3,1.5,0.2\n")
    out, bad = tmp_path / "scores.csv", tmp_path / "bad.csv"
    result = score("--file", str(src), "--out", str(out), "--skip-bad", str(bad))
    assert result.exit_code == 0, result.output
    assert len(read_out(out)) == 3
    with bad.open() as fh:
        set_aside = list(csv.DictReader(fh))
    assert [(r["line"], r["reason"]) for r in set_aside] == [
        ("2", "3 values, not 4"),
        ("4", "not a finite number: 'nan'"),
    ]
    assert "2 bad rows skipped" in result.output


def test_over_a_thousand_rows_without_out_says_to_use_out(api, tmp_path):
    rows_csv(tmp_path / "in.csv", 1_001)
    result = score("--file", str(tmp_path / "in.csv"))
    assert result.exit_code == 2
    assert "more than 1,000 rows" in result.output and "--out" in result.output
    rows_csv(tmp_path / "small.csv", 1_000)
    assert score("--file", str(tmp_path / "small.csv"), "--json").exit_code == 0


def test_a_mid_run_champion_change_is_in_every_row_and_the_summary(api, tmp_path, monkeypatch):
    rows = rows_csv(tmp_path / "in.csv", 2_000)
    first_of = {",".join(rows[i]): i // 250 for i in range(0, 2_000, 250)}
    real = web.ScoringClient.score_csv
    promoted = threading.Event()

    def score_csv(self, body: bytes):
        # Requests are in flight together: requests 4-8 wait until the answer to request 3 is
        # in and v2 is the champion, so exactly 3 requests are v1's whatever the interleaving.
        chunk = first_of[body.split(b"\n", 1)[0].decode()]
        if chunk >= 3:
            assert promoted.wait(60)
        answer = real(self, body)
        if chunk == 2:
            api.promote("2")
            promoted.set()
        return answer

    monkeypatch.setattr(web.ScoringClient, "score_csv", score_csv)
    out = tmp_path / "scores.csv"
    result = score("--file", str(tmp_path / "in.csv"), "--out", str(out), "--chunk-rows", "250")
    assert result.exit_code == 0, result.output
    versions = [r["model_version"] for r in read_out(out)]
    assert versions.count("1") == 750 and versions.count("2") == 1250  # 3 requests, then 5
    assert "model v1, v2" in result.output
    assert "the champion changed during the run" in result.output


def test_413_halves_the_requests_and_503_is_retried(monkeypatch, tmp_path):
    served = Api(max_batch_rows=100)
    served.holder.current = None  # no model yet: 503 until one is loaded
    with served.server as url:
        rows_csv(tmp_path / "in.csv", 900)
        from irisctl import batch

        sleeps = []
        loaded = threading.Event()

        def sleep(s: float) -> None:
            # The first backoff loads the model; every backoff waits for it, as a real one
            # would wait out the load (requests in flight must not use up their retries
            # while it loads).
            sleeps.append(s)
            if len(sleeps) == 1:
                served.holder.refresh()
                loaded.set()
            loaded.wait(30)

        monkeypatch.setattr(batch.time, "sleep", sleep)
        summary = batch.score_file(
            url, str(tmp_path / "in.csv"), str(tmp_path / "out.csv"), chunk_rows=300
        )
    assert summary.rows == 900 and sleeps
    assert len(read_out(tmp_path / "out.csv")) == 900


def test_a_422_stops_with_the_apis_message(api, tmp_path):
    from irisctl import batch
    from irisctl.errors import IrisctlError

    client = web.ScoringClient(api.url, 1)
    with pytest.raises(IrisctlError, match="answered 422: line 2: 3 values, not 4"):
        client.score_csv(b"1,2,3,4\n1,2,3\n")
    with pytest.raises(web.TooLarge):
        web.ScoringClient(api.url, 1).score_csv(b"1,2,3,4\n" * 10_001)
    assert batch.COLUMNS[-1] == "model_version"


def test_ctrl_c_leaves_no_out_and_says_how_many_rows_were_scored(api, tmp_path):
    """Rows come from a pipe this test keeps open, so Ctrl-C always lands mid-run."""
    rows_csv(tmp_path / "in.csv", 20_000)
    home = tmp_path / "cli-home"
    port = api.url.rsplit(":", 1)[1]
    state.write(home, {"target": "local", "up": True, "ports": {"api": int(port)}})
    out = tmp_path / "scores.csv"
    env = {**os.environ, "IRISCTL_HOME": str(home), "IRISCTL_API_PORT": port}
    proc = subprocess.Popen(
        [sys.executable, "-m", "irisctl", "predict", "--file", "-",
         "--out", str(out), "--chunk-rows", "100"],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdin is not None
        proc.stdin.write((tmp_path / "in.csv").read_text())
        proc.stdin.flush()  # and left open: the CLI waits for more rows

        def scoring() -> bool:
            parts = [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
            return bool(parts) and parts[0].stat().st_size > 0

        wait_until(scoring, 60, 0.05, what="the CLI writing answers")
        proc.send_signal(signal.SIGINT)
        err = proc.stderr.read() if proc.stderr else ""
        proc.wait(timeout=30)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 130, err
    assert "interrupted:" in err and "rows scored" in err and "was not written" in err
    scored = int(err.split("interrupted:")[1].split("rows scored")[0].replace(",", ""))
    assert 0 < scored <= 20_000
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert "Traceback" not in err


def test_predict_file_is_not_up_exits_3(tmp_path, monkeypatch):
    monkeypatch.setenv("IRISCTL_HOME", str(tmp_path))
    rows_csv(tmp_path / "in.csv", 10)
    result = score("--file", str(tmp_path / "in.csv"), "--out", str(tmp_path / "o.csv"))
    assert result.exit_code == 3
    assert not (tmp_path / "o.csv").exists()
