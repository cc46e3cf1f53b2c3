"""Batch scoring of a CSV file of any size through the model API (`irisctl predict --file --out`).

Rows stream through the model API in chunks (stream.py: checked as they come, several requests
in flight, retried when a retry can help), and their answers are written in input order to a
temporary file that is renamed to OUT only when every row is scored: a failed or interrupted run
never leaves a half file under OUT's name. Memory is bounded by the requests in flight, not by
the file.
"""

from __future__ import annotations

import collections
import csv
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import stream
from .clients import web
from .errors import BadInput, IrisctlError
from .stream import Chunk, Interrupted

FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
CLASSES = ("setosa", "versicolor", "virginica")
# The API's answer columns (prediction … warnings, id) between the input and model_version.
COLUMNS = (*FEATURES, "prediction", *CLASSES, "warnings", "id", "model_version")
# Within the API's defaults (IRIS_MAX_BODY_BYTES 1 MiB, IRIS_MAX_BATCH_ROWS 10,000), with room.
CHUNK_ROWS = 10_000
MAX_BODY_BYTES = 1_000_000
FLOAT32_MAX = 3.4028234e38


@dataclass
class Summary:
    """What a batch run did; ``versions`` in the order they first answered."""

    rows: int = 0
    classes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASSES, 0))
    warned: int = 0
    skipped: int = 0
    seconds: float = 0.0
    versions: list[str] = field(default_factory=list)
    out: str = ""

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def champion_changed(self) -> bool:
        return len(self.versions) > 1

    def as_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "classes": self.classes,
            "rows_with_warnings": self.warned,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
            "rows_per_s": round(self.rows_per_s, 1),
            "versions": self.versions,
            "champion_changed": self.champion_changed,
            "out": self.out,
        }


def _row_problem(cells: list[str]) -> str | None:
    if len(cells) != len(FEATURES):
        return f"{len(cells)} values, not {len(FEATURES)}"
    for cell in cells:
        try:
            value = float(cell)
        except ValueError:
            return f"not a number: {cell!r}"
        if not math.isfinite(value) or abs(value) > FLOAT32_MAX or "x" in cell.lower():
            return f"not a finite number: {cell!r}"
    return None


def _numeric(cells: list[str]) -> bool:
    try:
        [float(c) for c in cells]
    except ValueError:
        return False
    return True


def _all_good(lines: list[str]) -> bool:
    """Whether every line is four finite numbers: one pass over the chunk, no per-row Python.

    The fast path; when it says no, each line is checked alone to name the bad one.
    """
    joined = ",".join(lines)
    parts = joined.split(",")
    if len(parts) != len(FEATURES) * len(lines) or "x" in joined or "X" in joined:
        return False
    try:
        values = list(map(abs, map(float, parts)))
    except ValueError:
        return False
    # NaN and inf make the sum non-finite; float64 cannot overflow on 40,000 float32 values.
    return math.isfinite(sum(values)) and max(values) <= FLOAT32_MAX


# A first line that is not numbers is a header.
ROWS = stream.Rows(_row_problem, lambda cells: not _numeric(cells), _all_good)


def _score(client: web.ScoringClient, chunk: Chunk) -> tuple[str, list[str]]:
    """One request: the version that answered and the chunk's answer lines."""
    version, text = client.score_csv(chunk.body)
    header, _, rest = text.partition("\n")  # the header line is the API's, not ours
    lines = rest.split("\n")
    if lines and not lines[-1]:
        lines.pop()
    if len(lines) != len(chunk.lines):
        raise IrisctlError(f"the model API answered {len(lines)} rows for {len(chunk.lines)}")
    if not header.endswith(",id"):
        # An API from before prediction ids (issue 21) ends its lines with the warnings: the
        # same columns, the id empty.
        lines = [f"{line}," for line in lines]
    return version, lines


class _Writer:
    """Output rows as CSV or JSON Lines; counts classes, warnings and versions."""

    def __init__(self, out: IO[str], jsonl: bool, summary: Summary) -> None:
        self.out = out
        self.jsonl = jsonl
        self.summary = summary
        if not jsonl:
            out.write(",".join(COLUMNS) + "\n")

    def write(self, rows: list[str], parts: list[tuple[str, list[str]]]) -> None:
        s = self.summary
        out: list[str] = []
        i = 0
        for version, lines in parts:
            if version not in s.versions:
                s.versions.append(version)
            counts = collections.Counter(line[: line.index(",")] for line in lines)
            for prediction, n in counts.items():
                s.classes[prediction] = s.classes.get(prediction, 0) + n
            # Each line ends with the id (empty from an API without ids); the warnings before it.
            s.warned += sum(not line[: line.rindex(",")].endswith(",") for line in lines)
            mine = rows[i : i + len(lines)]
            i += len(lines)
            if not self.jsonl:
                out += [f"{row},{line},{version}\n" for row, line in zip(mine, lines, strict=True)]
                continue
            for row, line in zip(mine, lines, strict=True):
                answer = next(csv.reader([line]))
                record = {
                    **dict(zip(FEATURES, map(float, row.split(",")), strict=True)),
                    "prediction": answer[0],
                    **dict(zip(CLASSES, map(float, answer[1:4]), strict=True)),
                    "model_version": version,
                    "warnings": answer[4].split("; ") if answer[4] else [],
                    "id": answer[5] or None,
                }
                out.append(json.dumps(record) + "\n")
        s.rows += len(rows)
        self.out.write("".join(out))


def _file_mode(path: Path) -> int:
    """OUT's mode as the shell would leave it: the old file's, else 0666 less the umask."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def score_file(
    api_url: str,
    source: str,
    out: str,
    *,
    skip_bad: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    chunk_rows: int = CHUNK_ROWS,
    in_flight: int = stream.IN_FLIGHT,
) -> Summary:
    """Score every row of ``source`` (a CSV path or "-") into ``out`` (a path or "-").

    OUT is JSON Lines when it ends in .jsonl/.ndjson, CSV otherwise. ``on_progress(rows,
    input_bytes)`` is called as answers are written. Raises BadInput for a bad row (without
    ``skip_bad``), Interrupted on Ctrl-C, IrisctlError when the API fails for good; in every such
    case OUT is left as it was.
    """
    summary = Summary(out=out)
    jsonl = out.endswith((".jsonl", ".ndjson"))
    started = time.perf_counter()
    src = stream.open_in(source)
    bad: stream.BadRows | None = None
    tmp: IO[str] | None = None
    client = web.ScoringClient(api_url, in_flight)
    try:
        if out == "-":
            sink: IO[str] = sys.stdout
        else:
            target = Path(out)
            if target.is_dir():
                raise BadInput(f"{out} is a directory", "give a file name: --out scores.csv")
            try:
                tmp = tempfile.NamedTemporaryFile(  # noqa: SIM115 - renamed or removed below
                    "w",
                    dir=target.parent,
                    prefix=f".{target.name}.",
                    suffix=".part",
                    delete=False,
                    encoding="utf-8",
                )
            except OSError as exc:
                raise BadInput(f"cannot write {out}: {exc.strerror}") from None
            sink = tmp
        if skip_bad is not None:
            bad = stream.BadRows(skip_bad)
        writer = _Writer(sink, jsonl, summary)

        def take(chunk: Chunk, parts: list[tuple[Chunk, tuple[str, list[str]]]]) -> None:
            writer.write(chunk.lines, [answer for _, answer in parts])
            if on_progress is not None:
                on_progress(summary.rows, chunk.end_offset)

        name = stream.input_name(source)
        stream.in_order(
            stream.chunks(src, name, ROWS, bad, chunk_rows, MAX_BODY_BYTES),
            lambda chunk: stream.sent(lambda c: _score(client, c), chunk),
            take,
            in_flight,
        )
        if bad is not None:
            summary.skipped = bad.count
        if summary.rows == 0:
            raise BadInput(f"{name} has no rows")
        sink.flush()
        if tmp is not None:
            tmp.close()
            os.chmod(tmp.name, _file_mode(Path(out)))  # mkstemp's 0600 is not what `>` gives
            os.replace(tmp.name, out)
            tmp = None
        summary.seconds = time.perf_counter() - started
        return summary
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted: {summary.rows} rows scored"
            + ("" if out == "-" else f"; {out} was not written"),
            "run it again to score the whole file",
        ) from None
    finally:
        if tmp is not None:
            tmp.close()
            Path(tmp.name).unlink(missing_ok=True)
        if bad is not None:
            bad.close()
        if src is not sys.stdin:
            src.close()
        client.close()
