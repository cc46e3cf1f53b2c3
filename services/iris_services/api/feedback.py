"""``POST /feedback``: labels for predictions the API made, counted and kept for training.

An accepted label is written at once to a spool that every worker of this API shares (sqlite in
``IRIS_FEEDBACK_SPOOL_DIR``): the spool decides duplicates for all of them in one transaction,
and a crashed worker loses nothing it answered "accepted" for. Every few seconds one worker
(whoever holds the flush lock) writes the labels not yet stored as one batch to the feedback
store (``common/feedback_store.py``: MLflow's artifact store), and reads the batches other
replicas wrote, so an id labelled there is a duplicate here too once that batch is read.

A batch is named in the spool before it is written and written again under the same name, with
the same bytes, until it is stored: a worker that dies mid-flush leaves a batch the next flush
finishes, and a replayed batch never adds a label twice (the trainer also keeps the first label
of an id, across batches).
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..common.feedback_ids import Ids, Issued
from ..common.feedback_store import FeedbackStore, Label, day_of, decode, encode
from ..common.names import CLASS_NAMES

log = logging.getLogger("iris.api")

MAX_LABELS = 10_000
# 10,000 labels of an 80-character id and the longest class name, as JSON, with room.
MAX_BODY_BYTES = 2_000_000
SPOOL_FILE = "feedback.sqlite"
_DAY_S = 86400.0


class BadFeedback(ValueError):
    """The body is not a feedback request (422); the message is safe to return."""


class TooManyLabels(BadFeedback):
    """More than MAX_LABELS labels (413)."""


def parse(body: bytes) -> list[tuple[str, str]]:
    """``{"labels": [{"id": "…", "label": "…"}, …]}`` as (id, label) pairs, or BadFeedback."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadFeedback(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or set(data) != {"labels"}:
        raise BadFeedback('body must be a JSON object with one key, "labels"')
    labels = data["labels"]
    if not isinstance(labels, list) or not labels:
        raise BadFeedback('"labels" must be a list of at least one {"id", "label"} object')
    if len(labels) > MAX_LABELS:
        raise TooManyLabels(f"a request holds at most {MAX_LABELS} labels")
    pairs = []
    for i, item in enumerate(labels):
        if not isinstance(item, dict) or set(item) != {"id", "label"}:
            raise BadFeedback(f'labels.{i}: must be an object with exactly "id" and "label"')
        ident, label = item["id"], item["label"]
        if not isinstance(ident, str) or not isinstance(label, str):
            raise BadFeedback(f"labels.{i}: id and label must be strings")
        if label not in CLASS_NAMES:
            shown = label[:40] + ("…" if len(label) > 40 else "")
            raise BadFeedback(
                f"labels.{i}.label: {shown!r} is not a class ({', '.join(CLASS_NAMES)})"
            )
        pairs.append((ident, label))
    return pairs


@dataclass
class Outcome:
    """What one request's labels came to."""

    accepted: list[tuple[Issued, str]] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    def answer(self) -> dict[str, Any]:
        return {
            "accepted": len(self.accepted),
            "duplicates": self.duplicates,
            "unknown": self.unknown,
        }


_SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    at REAL NOT NULL,      -- accepted at (unix seconds)
    issued REAL NOT NULL,  -- the prediction's time, from its id: when the row can be pruned
    batch TEXT             -- NULL: not yet in a batch
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS labels_batch ON labels (batch);
CREATE TABLE IF NOT EXISTS batches (
    name TEXT PRIMARY KEY,
    stored INTEGER NOT NULL,  -- 0: named, its labels claimed, not yet written to the store
    at REAL NOT NULL
) WITHOUT ROWID;
"""


class Spool:
    """The labels of this API's workers (sqlite, WAL): what is accepted, batched and stored.

    One connection per process, used by one thread at a time (``lock``)."""

    def __init__(self, directory: Path, ids: Ids, max_age_s: float) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = directory / SPOOL_FILE
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)  # sqlite's -wal/-shm copy its mode
        os.fchmod(fd, 0o600)
        os.close(fd)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # a process crash loses nothing
        self.db.executescript(_SCHEMA)  # its own transaction (executescript commits first)
        self.lock = threading.Lock()
        self.ids = ids
        self.max_age_s = max_age_s
        self.flush_lock_path = directory / "flush.lock"

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One IMMEDIATE transaction (sqlite's write lock held from the start, so two workers
        never both decide an id is new), committed at the end, rolled back on an exception."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def accept(self, pairs: list[tuple[str, str]], now: float) -> Outcome:
        """Record every new label of a known id; the rest are duplicates or unknown."""
        out = Outcome()
        read = [(ident, label, self.ids.read(ident, self.max_age_s)) for ident, label in pairs]
        candidates = [ident for ident, _, issued in read if issued is not None]
        with self.lock, self._write():
            known = self._known(candidates)
            rows = []
            for ident, label, issued in read:
                if issued is None:
                    out.unknown.append(ident)
                elif ident in known:
                    out.duplicates.append(ident)
                else:
                    known.add(ident)
                    rows.append((ident, label, now, issued.issued_at))
                    out.accepted.append((issued, label))
            self.db.executemany(
                "INSERT INTO labels (id, label, at, issued) VALUES (?, ?, ?, ?)", rows
            )
        return out

    def _known(self, idents: list[str]) -> set[str]:
        known: set[str] = set()
        for start in range(0, len(idents), 500):  # sqlite's bound on variables
            part = idents[start : start + 500]
            marks = ",".join("?" * len(part))
            cursor = self.db.execute(f"SELECT id FROM labels WHERE id IN ({marks})", part)
            known.update(r[0] for r in cursor)
        return known

    def claim(self, now: float) -> str | None:
        """Name a batch for every label not yet in one; None when there is none."""
        name = f"{day_of(now)}/{int(now * 1000):013d}-{secrets.token_hex(4)}.jsonl"
        with self.lock, self._write():
            claimed = self.db.execute(
                "UPDATE labels SET batch = ? WHERE batch IS NULL", (name,)
            ).rowcount
            if not claimed:
                return None
            self.db.execute("INSERT INTO batches (name, stored, at) VALUES (?, 0, ?)", (name, now))
        return name

    def unstored(self) -> list[str]:
        with self.lock:
            rows = self.db.execute("SELECT name FROM batches WHERE stored = 0 ORDER BY name")
            return [r[0] for r in rows]

    def body(self, name: str) -> bytes:
        with self.lock:
            rows = self.db.execute("SELECT id, label, at FROM labels WHERE batch = ?", (name,))
            return encode([Label(*r) for r in rows])

    def stored(self, name: str) -> None:
        with self.lock, self._write():
            self.db.execute("UPDATE batches SET stored = 1 WHERE name = ?", (name,))

    def seen(self) -> set[str]:
        with self.lock:
            return {r[0] for r in self.db.execute("SELECT name FROM batches")}

    def add_batch(self, name: str, labels: list[Label], now: float) -> None:
        """Record a batch another replica stored: its ids are duplicates here from now on."""
        rows = []
        for x in labels:
            issued = self.ids.read(x.id, None)
            if issued is not None:
                rows.append((x.id, x.label, x.at, issued.issued_at, name))
        with self.lock, self._write():
            self.db.executemany(
                "INSERT OR IGNORE INTO labels (id, label, at, issued, batch) VALUES (?,?,?,?,?)",
                rows,
            )
            self.db.execute(
                "INSERT OR REPLACE INTO batches (name, stored, at) VALUES (?, 1, ?)", (name, now)
            )

    def pending(self) -> int:
        """Labels accepted and not yet in the store."""
        with self.lock:
            row = self.db.execute(
                "SELECT count(*) FROM labels WHERE batch IS NULL "
                "OR batch IN (SELECT name FROM batches WHERE stored = 0)"
            ).fetchone()
            return int(row[0])

    def prune(self, now: float) -> None:
        """Forget stored labels whose ids expired (they can no longer be labelled again)."""
        horizon = now - self.max_age_s - _DAY_S
        with self.lock, self._write():
            self.db.execute(
                "DELETE FROM labels WHERE issued < ? AND batch IN "
                "(SELECT name FROM batches WHERE stored = 1)",
                (horizon,),
            )
            self.db.execute(
                "DELETE FROM batches WHERE stored = 1 AND at < ? AND name NOT IN "
                "(SELECT DISTINCT batch FROM labels WHERE batch IS NOT NULL)",
                (horizon - _DAY_S,),
            )

    def close(self) -> None:
        with self.lock:
            self.db.close()


class Flusher:
    """Moves the spool's labels to the store and the store's other batches into the spool.

    Every worker runs one; the flush lock (``flock`` on a file in the spool directory) lets one
    at a time do the work. The first round reads every day a live id can have been labelled
    on; later rounds only today and yesterday."""

    def __init__(
        self,
        spool: Spool,
        store: FeedbackStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spool = spool
        self.store = store
        self.clock = clock
        self.synced_days: int | None = None  # None: the first round has not read the store
        self.last_prune = 0.0

    def run_once(self, wait: bool = False) -> bool:
        """One round, if no other worker is in one (``wait``: after it); False when another
        was."""
        fd = os.open(self.spool.flush_lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                return False
            self._round()
            return True
        finally:
            os.close(fd)  # releases the flock

    def _round(self) -> None:
        now = self.clock()
        self.spool.claim(now)
        for name in self.spool.unstored():
            self.store.put(name, self.spool.body(name))
            self.spool.stored(name)
        self._read_others(now)
        if now - self.last_prune > 3600:
            self.spool.prune(now)
            self.last_prune = now

    def _read_others(self, now: float) -> None:
        back = 2 if self.synced_days is not None else int(self.spool.max_age_s // _DAY_S) + 2
        days = {day_of(now - i * _DAY_S) for i in range(back)}
        present = set(self.store.days())
        seen = self.spool.seen()
        for day in sorted(days & present):
            for name in self.store.names(day):
                if name in seen:
                    continue
                try:
                    labels = decode(self.store.get(name))
                except ValueError:
                    continue  # not whole yet: read it next round
                self.spool.add_batch(name, labels, now)
        self.synced_days = back

    def run_forever(
        self, every_s: float, stop: threading.Event, first: threading.Event | None = None
    ) -> None:
        """A round at once (then ``first`` is set: a new pod learns the stored ids before it
        serves), rounds every ``every_s`` until ``stop``, then one last round (bounded by the
        store's timeout) so a stopping worker leaves nothing unstored that it could store.
        """
        self._guarded(wait=True)  # a sibling worker's round: then ours reads what it missed
        if first is not None:
            first.set()
        while not stop.wait(every_s):
            self._guarded()
        self._guarded()

    def _guarded(self, wait: bool = False) -> None:
        try:
            self.run_once(wait)
        except Exception as exc:  # the store unreachable or refusing, the disk: kept, retried
            log.warning(
                "could not store the feedback labels (kept in the spool, retried): %s",
                exc,
                extra={"event": "feedback.store_failed"},
            )


def outcome_counts(accepted: list[tuple[Issued, str]]) -> Counter[tuple[str, str]]:
    """Accepted labels by (version, outcome) for ``iris_api_feedback_total``."""
    counts: Counter[tuple[str, str]] = Counter()
    for issued, label in accepted:
        right = issued.predicted < len(CLASS_NAMES) and CLASS_NAMES[issued.predicted] == label
        counts[(issued.version, "correct" if right else "wrong")] += 1
    return counts
