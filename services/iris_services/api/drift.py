"""Served-input statistics: are the rows the API answers still like the champion's training rows?

Each worker keeps a sliding window of the rows it answered — the last ``drift_window_rows /
workers`` rows, none older than ``drift_window_s`` — binned with the edges of the champion's
reference profile (train/profile.py). It also counts the predicted classes and the values
outside the training range, and warns about such rows in the answer.

The request path does only what the answer needs: it checks the row against the training range
(for ``warnings``) and appends the request's arrays to a pending list, under a lock nobody holds
for long. Everything else happens off the request path, in bulk with numpy: a tick every second
(a background thread, and each scrape) bins the pending rows into the window, counts their
classes and out-of-range values, expires old rows, publishes the counts to Prometheus, and
fetches the reference profile when the champion changes. Timed inside a 1-worker API under
load (~240 µs of CPU a one-row request): binning and counting each row in the request path took
~8 µs a request; noting it takes ~4 µs, and the tick's bulk binning ~0.7 µs a row
(bench/run.py's drift row measures the whole). The window resets when the champion changes;
rows answered by an earlier champion still count for the class mix.

Across workers (prometheus_client's multiprocess mode): each worker publishes its window's bin
counts as a ``livesum`` gauge, so a scrape, whichever worker answers it, sees the bins of every
worker's window summed, and the PSI is computed at scrape time from those sums against the
reference: the PSI of the API's whole window. A PSI per worker, aggregated with max or mean,
would be the PSI of 1/workers of the rows, noisier: max overstates drift, mean understates it.
Like the API's other live gauges, a worker that dies without cleanup keeps its last counts until
the API restarts. For a moment after a champion change the workers' windows may mix two
references' bins; the minimum row count the alert waits for and its ``for:`` absorb that.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric

from ..common.names import CLASS_NAMES, FEATURE_NAMES, REFERENCE_PROFILE_ARTIFACT
from ..common.settings import ApiSettings
from . import mlflow_rest

log = logging.getLogger("iris.api")

EPSILON = 1e-4  # the share an empty bin counts as, so that PSI stays finite
TICK_S = 1.0
RETRY_S = 30.0  # after a failed or empty fetch of the reference profile
MAX_PENDING = 8192  # requests noted but not yet binned, at most (a stalled tick drains inline)

Fetch = Callable[[str, str], dict[str, Any] | None]  # (model name, version) → profile or None


# -- the pure part -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """A champion's reference profile, ready for binning (features in FEATURE_NAMES order)."""

    version: str
    edges: tuple[tuple[float, ...], ...]
    expected: tuple[tuple[float, ...], ...]  # share of the training rows in each bin
    low: tuple[float, ...]
    high: tuple[float, ...]
    _edge_arrays: tuple[np.ndarray, ...] = field(repr=False, compare=False, default=())
    bounds: tuple[tuple[float, float], ...] = field(repr=False, compare=False, default=())
    _low: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.zeros(0))
    _high: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.zeros(0))

    @classmethod
    def from_profile(cls, version: str, profile: dict[str, Any]) -> Reference:
        """Check and convert the trainer's JSON; ValueError when it is not a usable profile."""
        try:
            features = [profile["features"][name] for name in FEATURE_NAMES]
            edges = tuple(tuple(float(e) for e in f["edges"]) for f in features)
            counts = [[float(c) for c in f["counts"]] for f in features]
            low = tuple(float(f["min"]) for f in features)
            high = tuple(float(f["max"]) for f in features)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a reference profile: {type(exc).__name__} {exc}") from None
        for name, e, c in zip(FEATURE_NAMES, edges, counts, strict=True):
            if len(c) != len(e) + 1 or sum(c) <= 0 or list(e) != sorted(e):
                raise ValueError(f"not a reference profile: bins of {name} do not add up")
        return cls(
            version=version,
            edges=edges,
            expected=tuple(tuple(x / sum(c) for x in c) for c in counts),
            low=low,
            high=high,
            _edge_arrays=tuple(np.array(e) for e in edges),
            bounds=tuple(zip(low, high, strict=True)),
            _low=np.array(low),
            _high=np.array(high),
        )


def psi(expected: Sequence[float], counts: Sequence[float]) -> float | None:
    """Population Stability Index of ``counts`` against the ``expected`` shares; None if empty.

    sum over bins of (actual - expected) * ln(actual / expected), each share floored at EPSILON.
    """
    total = float(sum(counts))
    if total <= 0:
        return None
    out = 0.0
    for e, c in zip(expected, counts, strict=True):
        a, e = max(c / total, EPSILON), max(e, EPSILON)
        out += (a - e) * math.log(a / e)
    return out


def row_warnings(values: Sequence[float], reference: Reference | None) -> list[str]:
    """What is wrong with one row's values: negative, or outside the training range."""
    out = []
    for i, (name, v) in enumerate(zip(FEATURE_NAMES, values, strict=True)):
        v = float(v)
        if v < 0:
            out.append(f"{name} {v} is negative: no length or width can be")
        elif reference is not None and not reference.low[i] <= v <= reference.high[i]:
            out.append(
                f"{name} {v} is outside the training range {reference.low[i]}–{reference.high[i]}"  # noqa: RUF001 - an en dash, as in prose
            )
    return out


def _odd(values: list[float], bounds: tuple[tuple[float, float], ...] | None) -> bool:
    """Whether one row gets warnings: a value outside the training range, or negative."""
    if bounds is None:
        return min(values) < 0
    for v, (lo, hi) in zip(values, bounds, strict=True):  # noqa: SIM110 - any() is 2x slower
        if not lo <= v <= hi:
            return True
    return False


def outside(rows: np.ndarray, reference: Reference | None) -> np.ndarray:
    """Per value of an (n, 4) array: outside the training range (negative, with no reference)."""
    if reference is None:
        return rows < 0
    return (rows < reference._low) | (rows > reference._high)


class Window:
    """Bin counts per feature of the most recent rows (pure: the caller gives the time).

    Holds the last ``max_rows`` rows that are at most ``max_age_s`` old. Rows come in chunks
    (one tick's worth), each kept as its rows' bin indices so that the oldest rows can be taken
    out exactly.
    """

    def __init__(self, reference: Reference, max_rows: int, max_age_s: float) -> None:
        self.reference = reference
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self._counts = np.zeros((len(FEATURE_NAMES), max(map(len, reference.edges)) + 1), int)
        self.rows = 0
        self._chunks: deque[tuple[float, np.ndarray]] = deque()  # (time, (n, 4) bin indices)

    @property
    def counts(self) -> list[list[int]]:
        """Rows in each bin, per feature (as many bins as the feature's edges + 1)."""
        edges = self.reference.edges
        return [c[: len(e) + 1].tolist() for c, e in zip(self._counts, edges, strict=True)]

    def add(self, rows: np.ndarray, now: float) -> None:
        """Count the rows of an (n, 4) array, then forget the oldest rows beyond ``max_rows``."""
        rows = rows[-self.max_rows :]
        if not len(rows):
            return
        bins = np.column_stack(
            [
                np.searchsorted(edges, rows[:, f], side="right")
                for f, edges in enumerate(self.reference._edge_arrays)
            ]
        )
        self._count(bins, +1)
        self._chunks.append((now, bins))
        self.rows += len(bins)
        excess = self.rows - self.max_rows
        while excess > 0:
            then, oldest = self._chunks[0]
            if len(oldest) <= excess:
                self._drop()
                excess -= len(oldest)
            else:
                self._count(oldest[:excess], -1)
                self._chunks[0] = (then, oldest[excess:])
                self.rows -= excess
                excess = 0

    def expire(self, now: float) -> None:
        """Forget the rows older than ``max_age_s``."""
        while self._chunks and self._chunks[0][0] < now - self.max_age_s:
            self._drop()

    def _drop(self) -> None:
        _, bins = self._chunks.popleft()
        self._count(bins, -1)
        self.rows -= len(bins)

    def _count(self, bins: np.ndarray, sign: int) -> None:
        width = self._counts.shape[1]
        for f in range(bins.shape[1]):
            self._counts[f] += sign * np.bincount(bins[:, f], minlength=width)

    def psi(self) -> dict[str, float]:
        """PSI per feature of this window alone (a single worker's view)."""
        counts = self.counts
        return _psi_by_feature(self.reference, lambda f, b: counts[f][b])


def _psi_by_feature(reference: Reference, count: Callable[[int, int], float]) -> dict[str, float]:
    out = {}
    for f, name in enumerate(FEATURE_NAMES):
        expected = reference.expected[f]
        value = psi(expected, [count(f, b) for b in range(len(expected))])
        if value is not None:
            out[name] = value
    return out


# -- the reference profile, from MLflow over its REST API --------------------------------------


def fetch_reference(
    tracking_uri: str, name: str, version: str, timeout_s: float = 10.0
) -> dict[str, Any] | None:
    """The reference profile stored with a registered version, beside its ONNX graph in the same
    logged model; None when it has none.

    Version → its logged model → the model's artifact root → the file, through the MLflow
    server's proxied artifact endpoint (``--serve-artifacts``), so the API needs no storage
    credentials (the same path as the graph: ``mlflow_rest``).
    """
    with httpx.Client(base_url=tracking_uri.rstrip("/"), timeout=timeout_s) as http:
        mv = http.get(
            "/api/2.0/mlflow/model-versions/get", params={"name": name, "version": version}
        )
        mv.raise_for_status()
        model_id = mlflow_rest.logged_model_id(str(mv.json()["model_version"].get("source", "")))
        if model_id is None:
            return None  # registered before MLflow 3's logged models: no profile beside it
        info = http.get(f"/api/2.0/mlflow/logged-models/{quote(model_id)}")
        info.raise_for_status()
        root = quote(mlflow_rest.artifact_path(info.json()["model"]["info"]["artifact_uri"]))
        resp = http.get(f"/api/2.0/mlflow-artifacts/artifacts/{root}/{REFERENCE_PROFILE_ARTIFACT}")
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return dict(resp.json())


# -- the worker's monitor: request hook, publisher, metrics -------------------------------------


class _Metrics:
    """The drift series; in multiprocess mode each worker writes its own, summed at scrape."""

    def __init__(self, settings: ApiSettings, registry: CollectorRegistry, multiprocess: bool):
        r = None if multiprocess else registry
        self.predictions = Counter(
            "iris_api_predictions", "Rows answered, by predicted class", ["class"], registry=r
        )
        self.out_of_range = Counter(
            "iris_api_inputs_out_of_range",
            "Served values outside the champion's training range (or negative), by feature",
            ["feature"],
            registry=r,
        )
        self.window_rows = Gauge(
            "iris_api_drift_window_rows",
            "Rows in the drift window (every worker's, summed)",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.bin_rows = Gauge(
            "iris_api_drift_window_bin_rows",
            "Rows of the drift window in each reference bin of a feature",
            ["feature", "bin"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.reference_loaded = Gauge(
            "iris_api_drift_reference_loaded",
            "1 when every worker holds the champion's reference profile",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.min_rows = Gauge(
            "iris_api_drift_min_window_rows",
            "Rows the window must hold before IrisInputDrift may fire",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.threshold = Gauge(
            "iris_api_drift_psi_threshold",
            "PSI above which IrisInputDrift fires",
            registry=r,
            multiprocess_mode="livemax",
        )
        for name in CLASS_NAMES:  # from 0, so that increase() sees the first rows
            self.predictions.labels(name)
        for name in FEATURE_NAMES:
            self.out_of_range.labels(name)
        self.min_rows.set(settings.drift_min_rows)
        self.threshold.set(settings.drift_psi_threshold)
        self.reference_loaded.set(0)
        self.window_rows.set(0)


class DriftMonitor:
    """One worker's served-input statistics: ``observe`` in the request path, ``tick`` besides."""

    def __init__(
        self,
        settings: ApiSettings,
        registry: CollectorRegistry,
        multiprocess: bool = False,
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = settings.drift_enabled
        self._model_name = settings.model_name
        self._max_rows = max(1, math.ceil(settings.drift_window_rows / settings.workers))
        self._max_age_s = settings.drift_window_s
        self._fetch: Fetch = fetch or (
            lambda name, version: fetch_reference(
                settings.tracking_uri, name, version, float(settings.mlflow_timeout_s)
            )
        )
        self._clock = clock
        self._multiprocess = multiprocess
        # _lock guards what the request path touches: the champion, the window's identity and
        # the pending rows. _drain_lock serialises the ticks (thread and scrape), which alone
        # change the window's counts and the counts since the last publish.
        self._lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._window: Window | None = None
        self._prepared: Reference | None = None  # fetched while the next champion loaded
        self._version: str | None = None  # the served champion's version
        self._previous: str | None = None  # the one it replaced: its late answers do not reset
        self._next_fetch = 0.0
        self._told: str | None = None  # the version whose missing profile was logged
        # Rows answered for _version since the last drain: one-row requests as a flat list of
        # values and a list of classes (cheapest to append, and to turn into arrays), batches as
        # arrays; and those answered by an earlier champion, which count but are not windowed.
        self._flat: list[float] = []
        self._best: list[int] = []
        self._batches: list[tuple[np.ndarray, np.ndarray]] = []
        self._late: list[tuple[np.ndarray, np.ndarray]] = []
        self._classes = np.zeros(len(CLASS_NAMES), int)  # since the last publish
        self._out_of_range = np.zeros(len(FEATURE_NAMES), int)
        self._published_bins = [0] * len(FEATURE_NAMES)
        self._failed = False  # logged once
        if self.enabled:
            self._metrics = _Metrics(settings, registry, multiprocess)
            registry.register(_PsiCollector(self))

    # -- the request path: called once per request, must never fail it ------------------------

    def observe(
        self, version: str, rows: np.ndarray, best: np.ndarray, answers: list[dict[str, Any]]
    ) -> None:
        """Note one request's rows and predicted classes; add ``warnings`` to odd rows' answers.

        Only the range check the answer needs happens here; the rows are binned and counted at
        the next tick (``drain``).
        """
        if not self.enabled:
            return
        if len(rows) == 1:
            self.observe_one(version, rows.tolist()[0], best.item(), answers[0])
            return
        try:
            reference = self._reference()
            if rows.ndim != 2 or rows.shape[1] != len(FEATURE_NAMES):
                raise ValueError(f"rows of shape {rows.shape}")
            for i in np.flatnonzero(outside(rows, reference).any(axis=1)).tolist():
                answers[i]["warnings"] = row_warnings(rows[i].tolist(), reference)
            with self._lock:
                if version != self._version:
                    self._switch(version, rows, best)
                else:
                    self._batches.append((rows, best))
                backlog = len(self._best) + len(self._batches)
            if backlog >= MAX_PENDING:  # the ticks are stalled (or not running): bound memory
                self.drain()
        except Exception:  # a bookkeeping bug must not cost a prediction, nor flood the log
            self._failed_once()

    def observe_one(
        self, version: str, values: list[float], best: int, answer: dict[str, Any]
    ) -> None:
        """``observe`` for a one-row request, without arrays: the hot path's (``fastpath``)."""
        if not self.enabled:
            return
        try:
            if len(values) != len(FEATURE_NAMES):
                raise ValueError(f"a row of {len(values)} values")
            reference = self._reference()
            odd = _odd(values, reference.bounds if reference is not None else None)
            with self._lock:
                if version != self._version:
                    self._switch(version, np.array([values], dtype=np.float64), np.array([best]))
                    backlog = 0
                else:
                    self._flat += values
                    self._best.append(best)
                    backlog = len(self._best)
            if odd:
                answer["warnings"] = row_warnings(values, reference)
            if backlog >= MAX_PENDING:  # the ticks are stalled (or not running): bound memory
                self.drain()
        except Exception:  # a bookkeeping bug must not cost a prediction, nor flood the log
            self._failed_once()

    def _reference(self) -> Reference | None:
        window = self._window
        return window.reference if window is not None else None

    def _failed_once(self) -> None:
        if not self._failed:
            self._failed = True
            log.exception("drift bookkeeping failed", extra={"event": "drift.failed"})

    def _switch(self, version: str, rows: np.ndarray, best: np.ndarray) -> None:
        """Rows answered by a champion other than the current one (``_lock`` held)."""
        if version != self._previous:
            self._reset(version)  # a new champion whose swap hook has not run (yet)
            self._batches.append((rows, best))
        else:  # a late answer of the replaced champion, which read the model before the swap
            self._late.append((rows, best))

    # -- the champion -------------------------------------------------------------------------

    def swapped(self, old: Any, new: Any) -> None:
        """The holder's swap hook: a new champion resets the window; its profile is fetched."""
        if self.enabled:
            with self._lock:
                self._model_name = new.champion.name
                self._reset(new.champion.version)

    def _reset(self, version: str) -> None:
        """A new champion (with ``_lock`` held): a new window once its profile is fetched."""
        if version != self._version:
            self._previous = self._version
        self._version = version
        prepared, self._prepared = self._prepared, None
        if prepared is not None and prepared.version == version:
            self._window = Window(prepared, self._max_rows, self._max_age_s)
        else:
            self._window = None
        self._next_fetch = 0.0
        if self._best:  # the rows still pending were answered by the replaced champion
            late = np.array(self._flat).reshape(-1, len(FEATURE_NAMES))
            self._late.append((late, np.array(self._best)))
            self._flat, self._best = [], []
        self._late += self._batches
        self._batches = []

    @property
    def reference(self) -> Reference | None:
        window = self._window
        return window.reference if window is not None else None

    def prepare(self, champion: Any) -> None:
        """The holder's pre-swap hook: fetch the new champion's reference while it loads, so
        its first answers already carry the training-range warnings (``swapped`` installs it)."""
        if not self.enabled:
            return
        self._model_name = champion.name
        reference = self._fetch_reference(champion.version)
        with self._lock:
            self._prepared = reference

    def _maybe_fetch(self) -> None:
        with self._lock:
            version = self._version
            have = self._window.reference.version if self._window is not None else None
        if version is None or version == have or self._clock() < self._next_fetch:
            return
        reference = self._fetch_reference(version)
        if reference is None:
            return
        with self._lock:
            if self._version == version:
                self._window = Window(reference, self._max_rows, self._max_age_s)

    def _fetch_reference(self, version: str) -> Reference | None:
        """The version's reference, or None (logged; the ticks retry after ``RETRY_S``)."""
        try:
            profile = self._fetch(self._model_name, version)
            reference = Reference.from_profile(version, profile) if profile else None
        except Exception as exc:
            self._next_fetch = self._clock() + RETRY_S
            log.warning(
                "could not fetch the reference profile of version %s: %s",
                version,
                exc,
                extra={"event": "drift.reference_failed", "version": version},
            )
            return None
        if reference is None:
            self._next_fetch = self._clock() + RETRY_S
            if self._told != version:
                self._told = version
                log.warning(
                    "version %s has no %s: input drift is not measured for it",
                    version,
                    REFERENCE_PROFILE_ARTIFACT,
                    extra={"event": "drift.reference_missing", "version": version},
                )
            return None
        log.info(
            "measuring input drift against version %s's training rows",
            version,
            extra={"event": "drift.reference_loaded", "version": version},
        )
        return reference

    # -- off the request path: draining and publishing ----------------------------------------

    def tick(self) -> None:
        """Publish the counts, then fetch the champion's reference if due."""
        if not self.enabled:
            return
        self.publish()
        self._maybe_fetch()

    def drain(self) -> None:
        """Bin the pending rows into the window and count their classes and odd values."""
        with self._drain_lock:
            self._drain(self._clock())

    def _drain(self, now: float) -> None:
        with self._lock:
            flat, best, batches, late = self._flat, self._best, self._batches, self._late
            self._flat, self._best, self._batches, self._late = [], [], [], []
            window = self._window
        reference = window.reference if window is not None else None
        if best:
            batches.insert(0, (np.array(flat).reshape(-1, len(FEATURE_NAMES)), np.array(best)))
        for group, windowed in ((batches, True), (late, False)):
            if not group:
                continue
            rows = np.concatenate([g[0] for g in group])
            classes = np.concatenate([g[1] for g in group])
            self._classes += np.bincount(classes, minlength=len(CLASS_NAMES))[: len(CLASS_NAMES)]
            self._out_of_range += outside(rows, reference).sum(axis=0)  # as warned about
            if windowed and window is not None:
                window.add(rows, now)

    def publish(self) -> None:
        """Drain, expire old rows, and write the window and the counts since the last publish
        to this worker's metrics."""
        if not self.enabled:
            return
        with self._drain_lock:
            now = self._clock()
            try:
                self._drain(now)
            except Exception:  # the noted rows are lost, but the scrape still answers
                if not self._failed:
                    self._failed = True
                    log.exception("drift bookkeeping failed", extra={"event": "drift.failed"})
            with self._lock:
                window = self._window
            if window is not None:
                window.expire(now)
            counts = window.counts if window is not None else [[] for _ in FEATURE_NAMES]
            rows = window.rows if window is not None else 0
            classes, self._classes = self._classes.tolist(), np.zeros(len(CLASS_NAMES), int)
            odd = self._out_of_range.tolist()
            self._out_of_range = np.zeros(len(FEATURE_NAMES), int)
            m = self._metrics
            for name, n in zip(CLASS_NAMES, classes, strict=True):
                if n:
                    m.predictions.labels(name).inc(n)
            for name, n in zip(FEATURE_NAMES, odd, strict=True):
                if n:
                    m.out_of_range.labels(name).inc(n)
            for f, name in enumerate(FEATURE_NAMES):
                for b in range(max(len(counts[f]), self._published_bins[f])):
                    m.bin_rows.labels(name, str(b)).set(counts[f][b] if b < len(counts[f]) else 0)
                self._published_bins[f] = max(len(counts[f]), self._published_bins[f])
            m.window_rows.set(rows)
            m.reference_loaded.set(1 if window is not None else 0)

    def start(self, stop: threading.Event) -> None:
        """Tick every second in a daemon thread until ``stop`` is set."""
        if not self.enabled:
            return

        def run() -> None:
            while not stop.is_set():
                try:
                    self.tick()
                except Exception:
                    log.exception("drift tick failed", extra={"event": "drift.failed"})
                stop.wait(TICK_S)

        threading.Thread(target=run, name="drift", daemon=True).start()

    def summed_bins(self) -> dict[tuple[str, str], float]:
        """The published bin counts, (feature, bin) → rows, summed over every live worker."""
        if self._multiprocess:
            from prometheus_client import multiprocess

            families: Iterable[Metric] = multiprocess.MultiProcessCollector(None).collect()
        else:
            families = self._metrics.bin_rows.collect()
        return {
            (s.labels["feature"], s.labels["bin"]): s.value
            for family in families
            if family.name == "iris_api_drift_window_bin_rows"
            for s in family.samples
        }


class _PsiCollector:
    """``iris_api_feature_psi{feature}``, computed at scrape time over every worker's window."""

    def __init__(self, monitor: DriftMonitor) -> None:
        self.monitor = monitor

    def describe(self) -> list[Metric]:
        return [self._family()]

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "iris_api_feature_psi",
            "Population Stability Index of the drift window against the training rows",
            labels=["feature"],
        )

    def collect(self) -> list[Metric]:
        reference = self.monitor.reference
        if reference is None:
            return []
        sums = self.monitor.summed_bins()
        family = self._family()
        values = _psi_by_feature(reference, lambda f, b: sums.get((FEATURE_NAMES[f], str(b)), 0.0))
        for name, value in values.items():
            family.add_metric([name], value)
        return [family]
