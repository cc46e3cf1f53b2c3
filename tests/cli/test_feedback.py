"""The feedback loop's CLI (issue 21): `predict` shows each prediction's id, `irisctl feedback`
sends labels for them.

The model API is a stand-in over real HTTP that answers as the contract says
(tests/cli/api_standin.py); `predict --file --out` against the real API app is
test_predict_file's.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from typer.testing import CliRunner

from irisctl.cli import app
from tests.cli.api_standin import row_of
from tests.cli.api_standin import standin as standin
from tests.cli.test_predict_file import read_out, rows_csv

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
