"""A CSV file of any size through the model API in chunks: the machinery `predict --file --out`
(batch.py) and `feedback --file` (feedback.py) share.

Lines are read and checked as they stream in, cut into requests within the API's limits, sent
several at a time over kept-alive connections, retried when a retry can help, and their answers
handed back in input order. Memory is bounded by the requests in flight, not by the file.
"""

from __future__ import annotations

import collections
import csv
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from .clients import web
from .errors import BadInput, IrisctlError

MAX_LINE_BYTES = 1_000  # a longer line is a bad row, not a request of its own
IN_FLIGHT = 4
# 503 (no model yet, a worker restarting) and dropped connections: retried for about 30 s.
BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0)
SKIP_BAD_HINT = "fix the row, or pass --skip-bad FILE to set such rows aside and go on"

T = TypeVar("T")


class Interrupted(IrisctlError):
    """Ctrl-C during a run over a file."""

    exit_code = 130


@dataclass
class Chunk:
    lines: list[str]  # the input's rows as "a,b,…" (cells stripped)
    end_offset: int  # input characters read up to this chunk's last row (for the progress bar)

    @property
    def body(self) -> bytes:
        """The rows as a CSV request body."""
        return ("\n".join(self.lines) + "\n").encode()


def _csv_size(line: str) -> int:
    return len(line) + 1


@dataclass(frozen=True)
class Rows:
    """What each line of an input must be, for ``chunks``."""

    problem: Callable[[list[str]], str | None]  # why a row's cells are bad, or None
    is_header: Callable[[list[str]], bool]  # whether the first line is a header, to skip
    # A check of a whole chunk at once, the fast path; when it says no (or there is none), each
    # line is checked alone to name the bad one.
    all_good: Callable[[list[str]], bool] | None = None
    size: Callable[[str], int] = _csv_size  # the bytes a line adds to a request's body


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
    rows: Rows,
    on_bad: Callable[[int, str, str], None] | None,
    chunk_rows: int,
    max_body: int,
) -> Iterator[Chunk]:
    """Checked rows in chunks of at most ``chunk_rows`` rows and ``max_body`` bytes.

    A first line ``rows.is_header`` says is a header is skipped. A bad row raises BadInput with
    its line number and reason, or, with ``on_bad(line_no, line, reason)``, is handed over and
    skipped.
    """
    counted = _Counted(stream)
    lines: list[str] = []
    numbers: list[int] = []  # each line's number in the file, to name a bad one
    size = 0
    first = True

    def checked() -> Chunk:
        if rows.all_good is not None and rows.all_good(lines):
            return Chunk(lines, counted.offset)
        good = []
        for line, n in zip(lines, numbers, strict=True):
            problem = rows.problem(line.split(","))
            if problem is None:
                good.append(line)
            elif on_bad is None:
                raise BadInput(f"{name}, line {n}: {problem}", SKIP_BAD_HINT)
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
            if rows.is_header(line.split(",")):
                continue
        if len(line) > MAX_LINE_BYTES:
            problem = f"longer than {MAX_LINE_BYTES} characters"
            if on_bad is None:
                raise BadInput(f"{name}, line {number}: {problem}")
            on_bad(number, line[:MAX_LINE_BYTES], problem)
            continue
        cost = rows.size(line)
        if lines and (len(lines) >= chunk_rows or size + cost > max_body):
            chunk = checked()
            if chunk.lines:
                yield chunk
            lines, numbers, size = [], [], 0
        lines.append(line)
        numbers.append(number)
        size += cost
    if lines:
        chunk = checked()
        if chunk.lines:
            yield chunk


def sent(call: Callable[[Chunk], T], chunk: Chunk) -> list[tuple[Chunk, T]]:
    """``call(chunk)``'s answer, as (part, answer) pairs: retried for about 30 s on a
    ``web.Retryable`` failure, and halved on ``web.TooLarge`` (the API's limits set lower than
    ours) into parts sent one after the other."""
    for delay in (*BACKOFF_S, None):
        try:
            return [(chunk, call(chunk))]
        except web.TooLarge:
            if len(chunk.lines) == 1:
                raise
            half = len(chunk.lines) // 2
            parts = []
            for lines in (chunk.lines[:half], chunk.lines[half:]):
                parts += sent(call, Chunk(lines, chunk.end_offset))
            return parts
        except web.Retryable:
            if delay is None:
                raise
            time.sleep(delay)
    raise AssertionError("unreachable")


def in_order(
    chunks: Iterable[Chunk],
    send: Callable[[Chunk], T],
    take: Callable[[Chunk, T], None],
    in_flight: int = IN_FLIGHT,
) -> None:
    """``send`` the chunks, ``in_flight`` at a time on threads; ``take`` each chunk's answer in
    input order. On any failure (Ctrl-C too) the requests not yet sent are cancelled."""
    pool = ThreadPoolExecutor(in_flight, thread_name_prefix="send")
    pending: collections.deque[tuple[Chunk, Future[T]]] = collections.deque()

    def take_one() -> None:
        chunk, future = pending.popleft()
        take(chunk, future.result())

    try:
        for chunk in chunks:
            pending.append((chunk, pool.submit(send, chunk)))
            # Keep one request queued behind each connection, so no connection waits on us.
            while len(pending) > in_flight * 2 or (pending and pending[0][1].done()):
                take_one()
        while pending:
            take_one()
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)


class BadRows:
    """``--skip-bad FILE``: each bad row with its line number and why (``line,row,reason``)."""

    def __init__(self, path: str) -> None:
        try:
            self.file = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise BadInput(f"cannot write {path}: {exc.strerror}") from None
        self.writer = csv.writer(self.file, lineterminator="\n")
        self.writer.writerow(("line", "row", "reason"))
        self.count = 0

    def __call__(self, line_no: int, line: str, reason: str) -> None:
        self.count += 1
        self.writer.writerow((line_no, line, reason))

    def close(self) -> None:
        self.file.close()


def open_in(source: str) -> IO[str]:
    """A CSV path, or "-" for standard input, to read."""
    if source == "-":
        return sys.stdin
    try:
        return open(source, newline="", encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot read {source}: {exc.strerror}") from None


def input_name(source: str) -> str:
    """How messages name the input."""
    return "standard input" if source == "-" else source


def input_size(source: str) -> int | None:
    """The input's size in bytes (None for standard input or a pipe)."""
    if source == "-":
        return None
    try:
        path = Path(source)
        return path.stat().st_size if path.is_file() else None
    except OSError:
        return None
