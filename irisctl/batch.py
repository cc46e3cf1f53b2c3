"""Batch scoring of a CSV file of any size through the model API (`irisctl predict --file --out`).

Rows are read and checked as they stream in, cut into requests within the API's limits, sent
several at a time over kept-alive connections, and their answers written in input order to a
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
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .clients import web
from .errors import BadInput, IrisctlError

FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
CLASSES = ("setosa", "versicolor", "virginica")
COLUMNS = (*FEATURES, "prediction", *CLASSES, "warnings", "model_version")
# Within the API's defaults (IRIS_MAX_BODY_BYTES 1 MiB, IRIS_MAX_BATCH_ROWS 10,000), with room.
CHUNK_ROWS = 10_000
MAX_BODY_BYTES = 1_000_000
MAX_LINE_BYTES = 1_000  # four numbers; a longer line is a bad row, not a request of its own
IN_FLIGHT = 4
# 503 (no model yet, a worker restarting) and dropped connections: retried for about 30 s.
BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0)
FLOAT32_MAX = 3.4028234e38


class Interrupted(IrisctlError):
    """Ctrl-C during a batch run; OUT was not written."""

    exit_code = 130


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


@dataclass
class Chunk:
    lines: list[str]  # the input's rows as "a,b,c,d" (cells stripped), also the request body
    end_offset: int  # input characters read up to this chunk's last row (for the progress bar)

    @property
    def body(self) -> bytes:
        return ("\n".join(self.lines) + "\n").encode()


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


class _Counted:
    """A text stream's lines, counting the characters read (the progress bar's measure)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.offset = 0

    def __iter__(self) -> Iterator[str]:
        for line in self.stream:
            self.offset += len(line)
            yield line


def chunks(
    stream: IO[str],
    name: str,
    on_bad: Callable[[int, str, str], None] | None,
    chunk_rows: int = CHUNK_ROWS,
    max_body: int = MAX_BODY_BYTES,
) -> Iterator[Chunk]:
    """Checked rows in chunks of at most ``chunk_rows`` rows and ``max_body`` bytes.

    A first line that is not numbers is a header. A bad row raises BadInput with its line number
    and reason, or, with ``on_bad(line_no, line, reason)``, is handed over and skipped.
    """
    counted = _Counted(stream)
    lines: list[str] = []
    numbers: list[int] = []  # each line's number in the file, to name a bad one
    size = 0
    first = True

    def checked() -> Chunk:
        if _all_good(lines):
            return Chunk(lines, counted.offset)
        good = []
        for line, n in zip(lines, numbers, strict=True):
            problem = _row_problem(line.split(","))
            if problem is None:
                good.append(line)
            elif on_bad is None:
                raise BadInput(
                    f"{name}, line {n}: {problem}",
                    "fix the row, or pass --skip-bad FILE to set such rows aside and go on",
                )
            else:
                on_bad(n, line, problem)
        return Chunk(good, counted.offset)

    for number, raw in enumerate(counted, 1):
        line = raw.strip()
        if '"' in line or " " in line or "\t" in line:  # quoted or spaced: csv's rules
            line = ",".join(c.strip() for c in next(csv.reader([line]), []))
        if not line.replace(",", ""):
            continue  # an empty line, or empty cells only
        if first:
            first = False
            if not _numeric(line.split(",")):
                continue  # a header
        if len(line) > MAX_LINE_BYTES:
            problem = f"longer than {MAX_LINE_BYTES} characters"
            if on_bad is None:
                raise BadInput(f"{name}, line {number}: {problem}")
            on_bad(number, line[:MAX_LINE_BYTES], problem)
            continue
        if lines and (len(lines) >= chunk_rows or size + len(line) + 1 > max_body):
            chunk = checked()
            if chunk.lines:
                yield chunk
            lines, numbers, size = [], [], 0
        lines.append(line)
        numbers.append(number)
        size += len(line) + 1
    if lines:
        chunk = checked()
        if chunk.lines:
            yield chunk


def _score(client: web.ScoringClient, chunk: Chunk) -> list[tuple[str, list[str]]]:
    """The chunk's answer lines, as (version, lines) parts; retries what a retry can fix."""
    for delay in (*BACKOFF_S, None):
        try:
            version, text = client.score_csv(chunk.body)
            lines = text.split("\n")[1:]  # the header line is the API's, not ours
            if lines and not lines[-1]:
                lines.pop()
            if len(lines) != len(chunk.lines):
                raise IrisctlError(
                    f"the model API answered {len(lines)} rows for {len(chunk.lines)}"
                )
            return [(version, lines)]
        except web.TooLarge:
            # The API's limits are smaller than ours (IRIS_MAX_* set lower): halve and go on.
            if len(chunk.lines) == 1:
                raise
            half = len(chunk.lines) // 2
            parts = []
            for lines in (chunk.lines[:half], chunk.lines[half:]):
                parts += _score(client, Chunk(lines, chunk.end_offset))
            return parts
        except web.Retryable:
            if delay is None:
                raise
            time.sleep(delay)
    raise AssertionError("unreachable")


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
            s.warned += sum(not line.endswith(",") for line in lines)
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
                }
                out.append(json.dumps(record) + "\n")
        s.rows += len(rows)
        self.out.write("".join(out))


def _open_in(source: str) -> IO[str]:
    if source == "-":
        return sys.stdin
    try:
        return open(source, newline="", encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot read {source}: {exc.strerror}") from None


def _file_mode(path: Path) -> int:
    """OUT's mode as the shell would leave it: the old file's, else 0666 less the umask."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def input_size(source: str) -> int | None:
    """The input's size in bytes (None for standard input or a pipe)."""
    if source == "-":
        return None
    try:
        path = Path(source)
        return path.stat().st_size if path.is_file() else None
    except OSError:
        return None


def score_file(
    api_url: str,
    source: str,
    out: str,
    *,
    skip_bad: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    chunk_rows: int = CHUNK_ROWS,
    in_flight: int = IN_FLIGHT,
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
    src = _open_in(source)
    bad_out: IO[str] | None = None
    tmp: IO[str] | None = None
    client = web.ScoringClient(api_url, in_flight)
    pool = ThreadPoolExecutor(in_flight, thread_name_prefix="score")
    pending: collections.deque[tuple[Chunk, Future[list[tuple[str, list[str]]]]]] = (
        collections.deque()
    )
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
        on_bad = None
        if skip_bad is not None:
            try:
                bad_out = open(skip_bad, "w", newline="", encoding="utf-8")  # noqa: SIM115
            except OSError as exc:
                raise BadInput(f"cannot write {skip_bad}: {exc.strerror}") from None
            bad_writer = csv.writer(bad_out, lineterminator="\n")
            bad_writer.writerow(("line", "row", "reason"))

            def on_bad(line_no: int, line: str, reason: str) -> None:
                summary.skipped += 1
                bad_writer.writerow((line_no, line, reason))

        writer = _Writer(sink, jsonl, summary)

        def drain_one() -> None:
            chunk, future = pending.popleft()
            writer.write(chunk.lines, future.result())
            if on_progress is not None:
                on_progress(summary.rows, chunk.end_offset)

        name = "standard input" if source == "-" else source
        for chunk in chunks(src, name, on_bad if skip_bad else None, chunk_rows):
            pending.append((chunk, pool.submit(_score, client, chunk)))
            # Keep one request queued behind each connection, so no connection waits on us.
            while len(pending) > in_flight * 2 or (pending and pending[0][1].done()):
                drain_one()
        while pending:
            drain_one()
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
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
        if tmp is not None:
            tmp.close()
            Path(tmp.name).unlink(missing_ok=True)
        if bad_out is not None:
            bad_out.close()
        if src is not sys.stdin:
            src.close()
        client.close()
