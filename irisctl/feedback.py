"""Labels for served predictions, sent to the model API's ``POST /feedback`` (`irisctl feedback`).

One label (``ID LABEL``), or a CSV file of ``id,label`` rows of any size streamed through the API
in chunks within its limits (stream.py, as `predict --file --out` does). Sending a label again is
harmless: the API counts an id once and answers it as a duplicate, so a file can be sent again
after a failure or Ctrl-C.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from iris_services.common.names import CLASS_NAMES

from . import stream
from .clients import web
from .errors import BadInput, NotUp
from .stream import Chunk, Interrupted

# The API's limits (the contract): at most 10,000 labels and 2,000,000 bytes a request.
CHUNK_LABELS = 10_000
MAX_BODY_BYTES = 2_000_000 - 100  # less the body's own {"labels":[]}
FIRST_UNKNOWN = 10  # unknown ids kept to show; the rest are counted
RESEND_HINT = "sending labels again is safe: a label already stored comes back as a duplicate"


class UnknownId(BadInput):
    """The API did not know the id: it did not issue it, or the id is too old to label."""

    def __init__(self, id_: str, max_age_days: float) -> None:
        super().__init__(
            f"unknown id {id_}: this model API did not issue it, or it is older than "
            f"{max_age_days:g} days",
            "ids come from `irisctl predict` (the id under its table, --json, or the id column "
            "of --out); labels are taken for feedback_max_age_days",
        )


def label_problem(label: str) -> str | None:
    """Why ``label`` is not a class name, or None."""
    if label in CLASS_NAMES:
        return None
    return f"not a class: {label!r} (one of {', '.join(CLASS_NAMES)})"


def _row_problem(cells: list[str]) -> str | None:
    if len(cells) != 2:
        return f"{len(cells)} values, not 2 (id,label)"
    if not cells[0]:
        return "no id"
    return label_problem(cells[1])


def _json_size(line: str) -> int:
    # "a,b" becomes {"id":"a","label":"b"} and a comma: json.dumps("a,b") (quotes and escapes
    # included) + 19 bytes.
    return len(json.dumps(line)) + 19


ROWS = stream.Rows(
    _row_problem,
    lambda cells: [c.lower() for c in cells] == ["id", "label"],  # the header, when there is one
    size=_json_size,
)


@dataclass
class Summary:
    """What a run of labels did, in the API's terms."""

    labels: int = 0  # answered by the API
    accepted: int = 0
    duplicates: int = 0
    unknown: int = 0
    unknown_ids: list[str] = field(default_factory=list)  # the first FIRST_UNKNOWN
    skipped: int = 0  # bad rows set aside (--skip-bad)
    seconds: float = 0.0
    source: str = ""

    def add(self, labels: int, answer: web.Feedback) -> None:
        self.labels += labels
        self.accepted += answer.accepted
        self.duplicates += len(answer.duplicates)
        self.unknown += len(answer.unknown)
        self.unknown_ids += answer.unknown[: FIRST_UNKNOWN - len(self.unknown_ids)]

    def as_json(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "unknown": self.unknown,
            "unknown_ids": self.unknown_ids,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
            "source": self.source,
        }


def check_label(id_: str, label: str) -> None:
    """BadInput unless ``id_`` is there and ``label`` is a class name."""
    problem = label_problem(label) if id_ else "no id"
    if problem is not None:
        raise BadInput(problem, "example: irisctl feedback ID versicolor")


def send_one(api_url: str, id_: str, label: str) -> web.Feedback:
    """One label (``check_label`` it first); BadInput when the API refuses it, NotUp when nothing
    answers at ``api_url``."""
    client = web.FeedbackClient(api_url, 1)
    try:
        return client.send([(id_, label)])
    except web.Unreachable as exc:
        raise NotUp(
            exc.message, "check `irisctl status`; start the stack with `irisctl up`"
        ) from None
    finally:
        client.close()


def _pairs(chunk: Chunk) -> list[tuple[str, str]]:
    return [(i, label) for i, _, label in (line.rpartition(",") for line in chunk.lines)]


def send_file(
    api_url: str,
    source: str,
    *,
    skip_bad: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    chunk_labels: int = CHUNK_LABELS,
    in_flight: int = stream.IN_FLIGHT,
) -> Summary:
    """Send every ``id,label`` row of ``source`` (a CSV path or "-"; header optional).

    ``on_progress(labels, input_bytes)`` is called as answers come. Raises BadInput for a bad row
    (without ``skip_bad``), Interrupted on Ctrl-C, IrisctlError when the API fails for good.
    """
    summary = Summary(source=source)
    started = time.perf_counter()
    name = stream.input_name(source)
    src = stream.open_in(source)
    bad: stream.BadRows | None = None
    client = web.FeedbackClient(api_url, in_flight)
    bad_row: BadInput | None = None

    def checked(chunks: Iterator[Chunk]) -> Iterator[Chunk]:
        # A bad row ends the input, not the run: the chunks in flight are answered first, so
        # the error can say how many labels went in (they cannot be taken back).
        nonlocal bad_row
        try:
            yield from chunks
        except BadInput as exc:
            bad_row = exc

    def take(chunk: Chunk, parts: list[tuple[Chunk, web.Feedback]]) -> None:
        for part, answer in parts:
            summary.add(len(part.lines), answer)
        if on_progress is not None:
            on_progress(summary.labels, chunk.end_offset)

    try:
        if skip_bad is not None:
            bad = stream.BadRows(skip_bad)
        stream.in_order(
            checked(stream.chunks(src, name, ROWS, bad, chunk_labels, MAX_BODY_BYTES)),
            lambda chunk: stream.sent(lambda c: client.send(_pairs(c)), chunk),
            take,
            in_flight,
        )
        if bad_row is not None and summary.labels:
            raise BadInput(
                f"{bad_row.message}; {summary.labels:,} labels from rows before it were sent",
                "; ".join(filter(None, (bad_row.hint, RESEND_HINT))),
            )
        if bad_row is not None:
            raise bad_row
        if bad is not None:
            summary.skipped = bad.count
        if summary.labels == 0:
            raise BadInput(f"{name} has no labels", "its rows are id,label (a header is optional)")
        summary.seconds = time.perf_counter() - started
        return summary
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted: {summary.labels:,} labels answered ({summary.accepted:,} accepted)",
            f"run it again to send the rest; {RESEND_HINT}",
        ) from None
    finally:
        if bad is not None:
            bad.close()
        if src is not sys.stdin:
            src.close()
        client.close()
