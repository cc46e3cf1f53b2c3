"""The feedback loop's CLI (issue 21): `predict` shows each prediction's id, `irisctl feedback`
sends labels for them.

The model API is a stand-in over real HTTP that answers as the contract says
(tests/cli/api_standin.py); `predict --file --out` against the real API app is
test_predict_file's.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from irisctl import state
from irisctl.cli import app
from irisctl.errors import BadInput, IrisctlError
from tests.cli.api_standin import row_of
from tests.cli.api_standin import standin as standin
from tests.cli.test_predict_file import read_out, rows_csv
from tests.conftest import free_port, wait_until
from tests.services.test_api import LiveServer

runner = CliRunner()


def run(*args: str, stdin: str | None = None):
    return runner.invoke(app, list(args), input=stdin)


# -- predict shows the ids -------------------------------------------------------------------


def test_predict_json_passes_the_id_through(standin):
    result = run("predict", "5.1", "3.5", "1.4", "0.2", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] == standin.issued[-1]


def test_predict_prints_the_id_whole_on_its_own_line_to_copy_into_feedback(standin):
    result = run("predict", "5.1", "3.5", "1.4", "0.2")
    assert result.exit_code == 0, result.output
    (id_,) = standin.issued
    assert len(id_) == 80
    # Whole on one line on an 80-column console, and the command to label it.
    assert any(line.split()[-1:] == [id_] for line in result.stdout.splitlines()), result.stdout
    assert "irisctl feedback ID LABEL" in result.stdout


def test_predict_a_small_file_prints_each_rows_id(standin, tmp_path):
    rows_csv(tmp_path / "in.csv", 3)
    result = run("predict", "--file", str(tmp_path / "in.csv"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for n, id_ in enumerate(standin.issued, 1):
        assert any(line.split() == [str(n), id_] for line in lines), result.stdout


def test_predict_without_ids_from_an_older_api_prints_no_id_line(standin):
    standin.with_ids = False
    result = run("predict", "5.1", "3.5", "1.4", "0.2")
    assert result.exit_code == 0, result.output
    assert "feedback" not in result.stdout


def test_predict_out_writes_each_rows_id_after_warnings(standin, tmp_path):
    rows = rows_csv(tmp_path / "in.csv", 1_200)  # a negative width every 500 rows
    out = tmp_path / "scores.csv"
    result = run(
        "predict", "--file", str(tmp_path / "in.csv"), "--out", str(out), "--chunk-rows", "250"
    )
    assert result.exit_code == 0, result.output
    header = out.read_text().split("\n", 1)[0].split(",")
    assert header[-3:] == ["warnings", "id", "model_version"]
    got = read_out(out)
    assert [r["petal_length"] for r in got] == [r[2] for r in rows]
    # Each row's id is the one the API issued for that row (requests answer in any order).
    assert [row_of(r["id"]) for r in got] == [",".join(r) for r in rows]
    assert sorted(r["id"] for r in got) == sorted(standin.issued)
    assert [r["model_version"] for r in got] == ["3"] * 1_200
    assert sum(bool(r["warnings"]) for r in got) == 2
    assert "2 with warnings" in result.output


def test_predict_out_jsonl_has_the_id(standin, tmp_path):
    rows_csv(tmp_path / "in.csv", 10)
    out = tmp_path / "scores.jsonl"
    result = run("predict", "--file", str(tmp_path / "in.csv"), "--out", str(out))
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == standin.issued  # one request


def test_predict_out_from_an_api_without_ids_leaves_the_id_column_empty(standin, tmp_path):
    standin.with_ids = False
    rows_csv(tmp_path / "in.csv", 600)
    out = tmp_path / "scores.csv"
    result = run("predict", "--file", str(tmp_path / "in.csv"), "--out", str(out))
    assert result.exit_code == 0, result.output
    got = read_out(out)
    assert {r["id"] for r in got} == {""} and {r["model_version"] for r in got} == {"3"}
    assert sum(bool(r["warnings"]) for r in got) == 1
    assert "1 with warnings" in result.output
    jsonl = tmp_path / "scores.jsonl"
    assert run("predict", "--file", str(tmp_path / "in.csv"), "--out", str(jsonl)).exit_code == 0
    assert {json.loads(line)["id"] for line in jsonl.read_text().splitlines()} == {None}


def labels_csv(path: Path, pairs: list[tuple[str, str]], header: bool = True) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        if header:
            writer.writerow(("id", "label"))
        writer.writerows(pairs)


# -- feedback ID LABEL -----------------------------------------------------------------------


def issue(standin, n: int = 1) -> list[str]:
    """Ids the stand-in issued, through `predict --json` as a user gets them."""
    ids = []
    for _ in range(n):
        result = run("predict", "5.1", "3.5", "1.4", "0.2", "--json")
        assert result.exit_code == 0, result.output
        ids.append(json.loads(result.stdout)["id"])
    return ids


def test_feedback_one_label_is_accepted_then_a_duplicate(standin):
    (id_,) = issue(standin)
    result = run("feedback", id_, "versicolor")
    assert result.exit_code == 0, result.output
    assert "labelled versicolor" in result.stdout and id_ in result.stdout
    assert standin.labels == {id_: "versicolor"}
    result = run("feedback", id_, "virginica", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"accepted": 0, "duplicates": [id_], "unknown": []}
    assert standin.labels == {id_: "versicolor"}  # counted once
    assert "already labelled" in run("feedback", id_, "setosa").stdout


def test_feedback_an_unknown_id_exits_2_and_says_why(standin):
    result = run("feedback", "not-an-id-it-issued", "setosa")
    assert result.exit_code == 2
    assert (
        "Error: unknown id not-an-id-it-issued: this model API did not issue it, or it is "
        "older than 7 days" in result.output
    )
    assert "Traceback" not in result.output
    result = run("feedback", "not-an-id-it-issued", "setosa", "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["unknown"] == ["not-an-id-it-issued"]


def test_feedback_a_bad_label_exits_2_before_any_request(standin):
    (id_,) = issue(standin)
    for label in ("Setosa", "rose", ""):
        result = run("feedback", id_, label)
        assert result.exit_code == 2, result.output
        assert "not a class" in result.output and "setosa, versicolor, virginica" in result.output
    assert standin.requests == [] and standin.labels == {}


def test_feedback_shows_the_apis_422_as_one_line(standin):
    from irisctl.clients import web

    client = web.FeedbackClient(standin.url, 1)
    with pytest.raises(BadInput, match=r"^the model API refused the labels: labels\[0\].label"):
        client.send([("x", "rose")])
    client.close()


def test_feedback_an_id_that_starts_with_a_dash_is_an_id(standin):
    # URL-safe base64 has "-": an id may start with one and hold an "f" (not `-f VALUE`).
    id_ = "-f" + issue(standin)[0][2:]
    standin.issued.append(id_)
    result = run("feedback", id_, "virginica")
    assert result.exit_code == 0, result.output
    assert standin.labels == {id_: "virginica"}


def test_feedback_needs_an_id_and_a_label_or_a_file(standin, tmp_path):
    for args in (["x"], [], ["x", "setosa", "--file", "l.csv"], ["x", "setosa", "--skip-bad", "b"]):
        result = run("feedback", *args)
        assert result.exit_code == 2, (args, result.output)
        assert "feedback takes ID LABEL, or --file" in result.output


def test_feedback_when_not_up_exits_3(tmp_path, monkeypatch):
    monkeypatch.setenv("IRISCTL_HOME", str(tmp_path))
    result = run("feedback", "some-id", "setosa")
    assert result.exit_code == 3 and "irisctl up" in result.output
    labels_csv(tmp_path / "l.csv", [("some-id", "setosa")])
    assert run("feedback", "--file", str(tmp_path / "l.csv")).exit_code == 3


def test_feedback_when_the_api_does_not_answer_exits_3(standin, monkeypatch):
    from irisctl import targets

    port = free_port()  # nothing listens there

    class Target:
        def endpoint(self, service: str) -> str:
            return f"http://127.0.0.1:{port}"

    monkeypatch.setattr(targets, "choose", lambda config, recorded: (Target(), "test"))
    result = run("feedback", "some-id", "setosa")
    assert result.exit_code == 3, result.output
    assert "not reachable" in result.output and "Traceback" not in result.output


def test_feedback_to_an_api_without_feedback_says_it_is_older(tmp_path):
    from fastapi import FastAPI

    from irisctl.clients import web

    with LiveServer(FastAPI()) as url:
        client = web.FeedbackClient(url, 1)
        with pytest.raises(IrisctlError, match="has no /feedback: it runs an older version"):
            client.send([("x", "setosa")])
        client.close()


# -- feedback --file -------------------------------------------------------------------------


def test_feedback_file_in_chunks_with_totals(standin, tmp_path):
    ids = issue(standin, 30)
    pairs = [(i, ("setosa", "versicolor", "virginica")[n % 3]) for n, i in enumerate(ids)]
    pairs[5:5] = [("forged-1", "setosa"), ("forged-2", "virginica")]
    labels_csv(tmp_path / "l.csv", pairs)
    run("feedback", ids[0], "setosa")  # labelled already
    result = run("feedback", "--file", str(tmp_path / "l.csv"), "--chunk-labels", "4")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "Sent 32 labels: 29 accepted, 1 already labelled (not counted again), 2 unknown" in text
    assert "2 ids unknown to the API" in text and "forged-1, forged-2" in text
    assert [n for n, _ in standin.requests[1:]] == [4] * 8  # after the one label above
    assert standin.labels == {i: label for i, label in pairs if i in ids} | {ids[0]: "setosa"}


def test_feedback_file_json_from_stdin_without_a_header(standin):
    ids = issue(standin, 3)
    stdin = "".join(f"{i},virginica\n" for i in ids) + "\n" + "unknown-1,setosa\n"
    result = run("feedback", "--file", "-", "--json", stdin=stdin)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {k: summary[k] for k in ("labels", "accepted", "duplicates", "unknown")} == {
        "labels": 4, "accepted": 3, "duplicates": 0, "unknown": 1
    }  # fmt: skip
    assert summary["unknown_ids"] == ["unknown-1"] and summary["skipped"] == 0


def test_feedback_file_keeps_the_first_ten_unknown_ids(standin, tmp_path):
    labels_csv(tmp_path / "l.csv", [(f"u{n}", "setosa") for n in range(25)])
    summary = json.loads(run("feedback", "--file", str(tmp_path / "l.csv"), "--json").stdout)
    assert summary["unknown"] == 25 and summary["unknown_ids"] == [f"u{n}" for n in range(10)]


def test_feedback_file_within_the_apis_limits_of_labels_and_bytes(standin, tmp_path):
    long_id = "x" * 980  # 985-character ids: 2,000,000 bytes come before 10,000 labels
    labels_csv(tmp_path / "l.csv", [(f"{long_id}{n:05d}", "versicolor") for n in range(12_000)])
    result = run("feedback", "--file", str(tmp_path / "l.csv"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["unknown"] == 12_000
    assert sum(n for n, _ in standin.requests) == 12_000
    assert max(size for _, size in standin.requests) <= 2_000_000
    assert sorted(size for _, size in standin.requests)[1] > 1_900_000  # full but the last
    standin.requests.clear()
    labels_csv(tmp_path / "l.csv", [(f"i{n}", "versicolor") for n in range(25_000)])
    assert run("feedback", "--file", str(tmp_path / "l.csv")).exit_code == 0
    assert sorted(n for n, _ in standin.requests) == [5_000, 10_000, 10_000]  # in any order


def test_feedback_file_a_bad_row_stops_with_its_line(standin, tmp_path):
    ids = issue(standin, 3)
    (tmp_path / "l.csv").write_text(f"id,label\n{ids[0]},setosa\n{ids[1]},rose\n")
    result = run("feedback", "--file", str(tmp_path / "l.csv"))
    assert result.exit_code == 2
    assert "line 3: not a class: 'rose'" in result.output and "--skip-bad" in result.output
    assert standin.labels == {}  # the rows are checked before their chunk is sent
    # Chunks before the bad row's were sent: it says so, and that sending again is safe.
    result = run("feedback", "--file", str(tmp_path / "l.csv"), "--chunk-labels", "1")
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "line 3: not a class: 'rose'" in text
    assert "1 labels from rows before it were sent" in text
    assert "comes back as a duplicate" in text
    assert standin.labels == {ids[0]: "setosa"}


def test_feedback_file_skip_bad_sets_bad_rows_aside(standin, tmp_path):
    ids = issue(standin, 3)
    (tmp_path / "l.csv").write_text(
        f"{ids[0]},setosa\n{ids[1]},Virginica\n{ids[2]}\n,setosa\n{ids[2]},virginica,x\n"
        f"{ids[2]},virginica\n"
    )
    bad = tmp_path / "bad.csv"
    result = run("feedback", "--file", str(tmp_path / "l.csv"), "--skip-bad", str(bad))
    assert result.exit_code == 0, result.output
    assert "Sent 2 labels: 2 accepted" in result.stdout and "4 bad rows skipped" in result.stdout
    with bad.open() as fh:
        set_aside = [(r["line"], r["reason"]) for r in csv.DictReader(fh)]
    assert set_aside == [
        ("2", "not a class: 'Virginica' (one of setosa, versicolor, virginica)"),
        ("3", "1 values, not 2 (id,label)"),
        ("4", "no id"),
        ("5", "3 values, not 2 (id,label)"),
    ]


def test_feedback_file_retries_a_503_and_halves_on_413(standin, tmp_path, monkeypatch):
    from irisctl import stream

    sleeps: list[float] = []
    monkeypatch.setattr(stream.time, "sleep", sleeps.append)
    ids = issue(standin, 40)
    labels_csv(tmp_path / "l.csv", [(i, "setosa") for i in ids])
    standin.fail_next = [503, 502]
    standin.max_labels = 15  # the API's limit set lower than the CLI's
    result = run("feedback", "--file", str(tmp_path / "l.csv"), "--chunk-labels", "40")
    assert result.exit_code == 0, result.output
    assert sleeps == [0.25, 0.5]
    assert sorted(n for n, _ in standin.requests) == [10, 10, 10, 10]
    assert len(standin.labels) == 40


def test_feedback_file_an_empty_file_or_unreadable_exits_2(standin, tmp_path):
    (tmp_path / "l.csv").write_text("id,label\n\n")
    result = run("feedback", "--file", str(tmp_path / "l.csv"))
    assert result.exit_code == 2 and "has no labels" in result.output
    result = run("feedback", "--file", str(tmp_path / "missing.csv"))
    assert result.exit_code == 2 and "cannot read" in result.output


def test_feedback_file_ctrl_c_says_how_many_labels_were_answered(standin, tmp_path):
    """As test_predict_file's Ctrl-C test: a real CLI subprocess reading a pipe kept open."""
    home = tmp_path / "cli-home"
    port = standin.url.rsplit(":", 1)[1]
    state.write(home, {"target": "local", "up": True, "ports": {"api": int(port)}})
    env = {**os.environ, "IRISCTL_HOME": str(home), "IRISCTL_API_PORT": port}
    proc = subprocess.Popen(
        [sys.executable, "-m", "irisctl", "feedback", "--file", "-", "--chunk-labels", "100"],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdin is not None
        proc.stdin.write("".join(f"u{n},setosa\n" for n in range(1_000)))
        proc.stdin.flush()  # and left open: the CLI waits for more rows
        wait_until(lambda: len(standin.requests) >= 5, 60, 0.05, what="labels sent")
        proc.send_signal(signal.SIGINT)
        err = proc.stderr.read() if proc.stderr else ""
        proc.wait(timeout=30)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 130, err
    assert "interrupted:" in err and "labels answered" in err and "duplicate" in err
    assert "Traceback" not in err
