"""The FastAPI application: routes and strict body handling. ``create_app`` composes the metrics
(``metrics``), the drift monitor (``drift``), the OpenAPI text (``openapi``) and the pages."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import secrets
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import ClientDisconnect

from ..common import feedback_ids
from ..common.feedback_ids import Ids
from ..common.feedback_store import FeedbackStore
from ..common.names import CLASS_NAMES
from ..common.settings import ApiSettings
from . import feedback, openapi, pages, schemas
from .answers import answer, answer_one, scores
from .drift import DriftMonitor, Fetch
from .fastpath import PredictFastPath
from .metrics import Metrics, PredictMetricsMiddleware
from .model_holder import Loaded, ModelHolder

log = logging.getLogger("iris.api")

NO_MODEL_HINT = "no model registered yet: run `irisctl train --now`"


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data), status_code=status, media_type="application/json", headers=headers
    )


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"detail": detail}, status, headers)


# An oversize body is read and discarded up to these bounds before the 413: a client that sends
# the whole body before reading (Python's urllib) otherwise gets "connection reset" when the
# server closes with bytes unread, instead of the 413.
DRAIN_MAX_BYTES = 16 * 1024 * 1024
DRAIN_MAX_SECONDS = 3.0


# What /predict accepts. A form post from a web page (text/plain, x-www-form-urlencoded,
# multipart) needs no CORS preflight, so it is refused with 415 before any parsing.
PREDICT_CONTENT_TYPES = frozenset({"application/json", "text/csv"})
UNSUPPORTED_MEDIA = (
    "send the body as JSON with the header Content-Type: application/json "
    "(or rows as CSV with Content-Type: text/csv)"
)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is over ``limit`` bytes (checked before and while reading)."""
    declared = request.headers.get("content-length")
    stream = request.stream()
    if declared is not None and declared.isdigit() and int(declared) > limit:
        if int(declared) <= DRAIN_MAX_BYTES:
            await _drain(stream)
        return None
    chunks = bytearray()
    async for chunk in stream:
        chunks += chunk
        if len(chunks) > limit:
            await _drain(stream)
            return None
    return bytes(chunks)


async def _drain(stream: AsyncIterator[bytes]) -> None:
    """Read and discard the rest of a body, bounded in bytes and time."""
    seen = 0
    try:
        async with asyncio.timeout(DRAIN_MAX_SECONDS):
            async for chunk in stream:
                seen += len(chunk)
                if seen > DRAIN_MAX_BYTES:
                    return
    except (TimeoutError, ClientDisconnect):
        return


CSV_HEADER = "prediction," + ",".join(CLASS_NAMES) + ",warnings,id\n"


def _csv_rows(body: bytes, max_rows: int) -> np.ndarray:
    """Rows of a ``text/csv`` batch (4 numbers a line, no header), or BadInput naming the line.

    The dense path for `irisctl predict --file`: numpy parses the whole body at once, which is
    what makes a million rows cheap; the JSON contract's rules (4 finite numbers within float32)
    apply unchanged.
    """
    lines = body.strip().split(b"\n")
    if not body.strip():
        raise schemas.BadInput("the CSV body has no rows")
    if len(lines) > max_rows:
        raise schemas.TooManyRows(f"a batch holds at most {max_rows} rows")
    try:
        rows = np.array(b",".join(lines).split(b","), dtype=np.float64)
    except ValueError:
        rows = np.empty(0)
    if rows.size != len(lines) * schemas.N_FEATURES:
        for n, line in enumerate(lines, 1):  # the slow path, only to name the bad line
            cells = line.split(b",")
            if len(cells) != schemas.N_FEATURES:
                raise schemas.BadInput(f"line {n}: {len(cells)} values, not {schemas.N_FEATURES}")
            try:
                [float(c) for c in cells]
            except ValueError:
                raise schemas.BadInput(f"line {n}: not a number") from None
        raise schemas.BadInput("not a CSV of numbers")
    rows = rows.reshape(len(lines), schemas.N_FEATURES)
    bad = ~(np.isfinite(rows) & (np.abs(rows) <= schemas.FLOAT32_MAX)).all(axis=1)
    if bad.any():
        n = int(np.flatnonzero(bad)[0]) + 1
        raise schemas.BadInput(f"line {n}: finite numbers within float32 only")
    return rows


def _csv_answer(loaded: Loaded, rows: np.ndarray, drift: DriftMonitor, ids: Ids) -> bytes:
    """One CSV line per row: class, the three probabilities, warnings joined by "; ", the id.

    What ``csv.writer`` writes, line for line, without its per-row cost (three quarters of a
    10,000-row request): floats as ``repr``, an empty last field for no warnings; the rare rows
    with warnings still go through the writer, for its quoting."""
    proba, best = scores(loaded, rows)
    answers: list[dict[str, Any]] = [{} for _ in range(len(rows))]
    drift.observe(loaded.champion.version, rows, best, answers)
    names = [CLASS_NAMES[i] for i in best.tolist()]
    made = ids.many(loaded.champion.version, rows, best)
    lines = [
        f"{name},{','.join(map(repr, p))},,{ident}\n"
        for name, p, ident in zip(names, proba.tolist(), made, strict=True)
    ]
    for i, a in enumerate(answers):
        if "warnings" in a:
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerow(
                (names[i], *proba[i].tolist(), "; ".join(a["warnings"]), made[i])
            )
            lines[i] = out.getvalue()
    return (CSV_HEADER + "".join(lines)).encode()


def _lifespan(
    settings: ApiSettings,
    holder: ModelHolder,
    drift: DriftMonitor,
    flusher: feedback.Flusher,
    poll: bool,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """While the app runs: the first load, the alias watcher, the drift monitor's ticks and the
    feedback flusher (only with ``poll``); all stopped when it stops, the flusher after one
    last round."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        first_round = threading.Event()
        flushing = threading.Thread(
            target=flusher.run_forever,
            args=(settings.feedback_flush_s, stop, first_round),
            name="feedback-flusher",
            daemon=True,
        )
        if poll:
            # Load the champion before this worker accepts connections, so no worker of several
            # answers 503 while a sibling already serves; bounded, so liveness never waits long.
            first = threading.Thread(
                target=holder.first_load,
                args=(settings.startup_load_timeout_s, stop),
                name="first-load",
                daemon=True,
            )
            first.start()
            deadline = time.monotonic() + settings.startup_load_timeout_s
            while first.is_alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            thread = threading.Thread(
                target=holder.run_forever,
                args=(settings.poll_s, stop),
                name="alias-watcher",
                daemon=True,
            )
            thread.start()
            drift.start(stop)
            flushing.start()
            # The ids other pods stored are duplicates here from the first request (bounded:
            # an unreachable MLflow fails the round at once, a slow one costs this wait).
            await asyncio.to_thread(first_round.wait, FIRST_ROUND_WAIT_S)
        yield
        stop.set()
        if flushing.is_alive():
            await asyncio.to_thread(flushing.join, FLUSH_AT_EXIT_S)
        flusher.spool.close()
        flusher.store.close()

    return lifespan


# How long a stopping API waits for its last feedback round (within the pod's grace period),
# and a starting one for its first (it reads the batches other pods stored).
FLUSH_AT_EXIT_S = 5.0
FIRST_ROUND_WAIT_S = 10.0


def _ids(key: bytes | None) -> Ids:
    if key is None:
        key = feedback_ids.key_from_env()
    if key is None:
        log.warning(
            "no signing key (IRIS_SIGNING_KEY_FILE): prediction ids are valid in this process only",
            extra={"event": "feedback.no_key"},
        )
        key = secrets.token_bytes(32)
    return Ids(key)


def create_app(
    settings: ApiSettings,
    holder: ModelHolder,
    *,
    poll: bool = True,
    fetch_reference: Fetch | None = None,
    feedback_key: bytes | None = None,
) -> FastAPI:
    """Build the app around a model holder; ``poll`` starts the background alias watcher.

    ``fetch_reference(name, version)`` returns a champion's reference profile (default: from
    MLflow's REST API); the input-drift statistics compare served rows with it.
    ``feedback_key`` signs prediction ids (default: derived from the stack's signing key).
    """
    metrics = Metrics(settings.accuracy_threshold, settings.live_accuracy_min_labels)
    ids = _ids(feedback_key)
    spool_dir = settings.feedback_spool_dir or tempfile.mkdtemp(prefix="iris-api-feedback-")
    flusher = feedback.Flusher(
        feedback.Spool(Path(spool_dir), ids, settings.feedback_max_age_s),
        FeedbackStore(settings.tracking_uri, settings.model_name, settings.mlflow_timeout_s),
    )
    holder.on_swap(metrics.swapped)
    holder.on_failure(metrics.load_failures.inc)
    drift = DriftMonitor(settings, metrics.registry, metrics.multiprocess, fetch_reference)
    holder.on_prepare(drift.prepare)
    holder.on_swap(drift.swapped)

    app = FastAPI(
        title="Iris model API",
        version="1",
        summary="Serves the champion of the iris-classifier registered model.",
        lifespan=_lifespan(settings, holder, drift, flusher, poll),
        docs_url=None,  # pages.install serves them from shipped assets, not a CDN
        redoc_url=None,
    )
    pages.install(
        app,
        settings.model_name,
        lambda: holder.current.champion.version if holder.current else None,
    )
    app.add_middleware(PredictMetricsMiddleware, metrics=metrics)
    # Added last, so outermost: a 200 of /predict never reaches the router (fastpath.py).
    app.add_middleware(
        PredictFastPath, settings=settings, holder=holder, drift=drift, metrics=metrics, ids=ids
    )
    app.state.drift = drift
    app.state.feedback = flusher

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        # FastAPI's default handler echoes the input and crashes (500) on NaN/Infinity.
        parts = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        return _error(422, "; ".join(parts))

    @app.post(
        "/predict",
        openapi_extra={"requestBody": openapi.predict_body()},
        responses=openapi.predict_responses(),
    )
    async def predict(request: Request) -> Response:
        """Classify one flower (`features`) or a batch (`instances`)."""
        body = await _read_body(request, settings.max_body_bytes)
        if body is None:
            return _error(413, f"request body is larger than {settings.max_body_bytes} bytes")
        media = _media_type(request)
        if media == "text/csv":  # the batch path: CSV in and out (irisctl predict --file --out)
            return _predict_csv(body)
        if media not in PREDICT_CONTENT_TYPES:
            return _error(415, UNSUPPORTED_MEDIA)
        try:
            parsed = schemas.parse(body, settings.max_batch_rows)
        except schemas.TooManyRows as exc:
            return _error(413, str(exc))
        except schemas.BadInput as exc:
            return _error(422, str(exc))
        loaded = holder.current
        if loaded is None:
            return _error(503, NO_MODEL_HINT, {"Retry-After": "10"})
        model_ref = {"name": loaded.champion.name, "version": loaded.champion.version}
        if isinstance(parsed, schemas.PredictOne):
            one = answer_one(loaded, parsed.features, drift, ids)
            return _json({**one, "model": model_ref})
        return _json(
            {
                "predictions": answer(loaded, np.array(parsed.instances), drift, ids),
                "model": model_ref,
            }
        )

    def _predict_csv(body: bytes) -> Response:
        try:
            rows = _csv_rows(body, settings.max_batch_rows)
        except schemas.TooManyRows as exc:
            return _error(413, str(exc))
        except schemas.BadInput as exc:
            return _error(422, str(exc))
        loaded = holder.current
        if loaded is None:
            return _error(503, NO_MODEL_HINT, {"Retry-After": "10"})
        return Response(
            _csv_answer(loaded, rows, drift, ids),
            media_type="text/csv",
            headers={
                "X-Model-Name": loaded.champion.name,
                "X-Model-Version": loaded.champion.version,
            },
        )

    @app.post(
        "/feedback",
        openapi_extra={"requestBody": openapi.feedback_body()},
        responses=openapi.feedback_responses(),
    )
    async def post_feedback(request: Request) -> Response:
        """Label predictions by their `id`: counted in `iris_api_feedback_total` (live accuracy)
        and kept for the next training."""
        body = await _read_body(request, feedback.MAX_BODY_BYTES)
        if body is None:
            return _error(413, f"request body is larger than {feedback.MAX_BODY_BYTES} bytes")
        if _media_type(request) != "application/json":
            return _error(
                415, "send the body as JSON with the header Content-Type: application/json"
            )
        try:
            pairs = feedback.parse(body)
        except feedback.TooManyLabels as exc:
            return _error(413, str(exc))
        except feedback.BadFeedback as exc:
            return _error(422, str(exc))
        outcome = await asyncio.to_thread(flusher.spool.accept, pairs, time.time())
        for (version, verdict), n in feedback.outcome_counts(outcome.accepted).items():
            metrics.feedback.labels(version, verdict).inc(n)
        return _json(outcome.answer())

    @app.get("/healthz")
    async def healthz() -> Response:
        """Liveness: the process answers (does not depend on MLflow)."""
        return _json({"status": "ok"})

    @app.get("/readyz", responses=openapi.not_ready())
    async def readyz() -> Response:
        """Readiness: 200 only while a model is loaded."""
        if holder.current is None:
            return _error(503, NO_MODEL_HINT)
        if not metrics.every_worker_loaded():
            return _error(503, "another API worker is still loading the model")
        return _json({"status": "ready", "version": holder.current.champion.version})

    @app.get("/model")
    async def model() -> Response:
        """The served model: name, version, alias, accuracy, graph digest, when it was loaded,
        and the last load error."""
        loaded = holder.current
        info: dict[str, Any] = {
            "name": settings.model_name,
            "alias": settings.model_alias,
            "version": None,
            "accuracy": None,
            "registered_at": None,
            "loaded_at": None,
            "graph_sha256": None,
            "last_load_error": holder.last_reason,  # the detail is in the API's log
            "load_failures": holder.load_failures,
        }
        if loaded is not None:
            info.update(
                version=loaded.champion.version,
                accuracy=loaded.champion.accuracy,
                registered_at=loaded.champion.registered_at,
                loaded_at=loaded.loaded_at,
                graph_sha256=loaded.sha256,
            )
        return _json(info)

    @app.get("/metrics", responses=openapi.metrics_responses())
    async def prom_metrics() -> Response:
        """Prometheus metrics."""
        drift.publish()  # this worker's latest counts; the others publish every second
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
