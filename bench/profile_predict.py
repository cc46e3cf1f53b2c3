"""Where a one-row /predict spends its time, in µs, inside one process (no HTTP server).

One command (`make bench-profile`, or `.venv/bin/python bench/profile_predict.py`): the model
API app with a 100-tree forest's ONNX graph (the trainer's seed-5 forest, as bench/run.py
serves), driven as ASGI by a minimal server loop, and beside it each step of the request timed
alone on the same row: body parse and validation, the input array, the session run, building
the answer, the drift bookkeeping, encoding, the request metrics; and the HTTP floor's app
(bench/floor.py: FastAPI reading the body, answering a constant) through the same loop.

What uvicorn and httptools add (reading the socket, parsing HTTP) is the same for both apps and
not in these numbers; bench/run.py measures it over real HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

BODY = b'{"features": [5.1, 3.5, 1.4, 0.2]}'


def _app_call(app: Any, body: bytes) -> Callable[[], Any]:
    """One POST /predict through ``app`` as uvicorn calls it (scope, receive, send)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict",
        "raw_path": b"/predict",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8080"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }
    message = {"type": "http.request", "body": body, "more_body": False}
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return message

    async def send(msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.start":
            statuses.append(msg["status"])

    async def call() -> None:
        await app(dict(scope), receive, send)
        if statuses.pop() != 200:
            raise SystemExit("profile: /predict did not answer 200")

    return call


def _time_async(loop: asyncio.AbstractEventLoop, call: Callable[[], Any], n: int) -> float:
    async def run() -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            await call()
        return time.perf_counter() - t0

    return loop.run_until_complete(run()) / n * 1e6


def _time(fn: Callable[[], Any], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000, help="per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median is shown")
    args = parser.parse_args()
    # One worker's way: the metrics in files, as the served API writes them (multiprocess mode).
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="profile-prom-"))

    import numpy as np
    import orjson
    from floor import app as floor_app

    from iris_services.api import schemas
    from iris_services.api.answers import answer, answer_one, scores
    from iris_services.api.app import create_app
    from iris_services.api.graph import GraphModel
    from iris_services.api.model_holder import ModelHolder
    from iris_services.common.alias import Champion
    from iris_services.common.settings import ApiSettings
    from iris_services.train import onnx_export, pipeline

    data = pipeline.load_dataset(0)
    graph = onnx_export.export(pipeline.train(5).model, data.x_train)

    class Registry:
        champ = Champion("iris-classifier", "1", "champion", 0.97, time.time(), None, "")

        def champion(self) -> Champion:
            return self.champ

        def load(self, champion: Champion) -> GraphModel:
            return GraphModel(graph.onnx, graph.sha256)

    holder = ModelHolder(Registry())
    holder.refresh()
    app = create_app(ApiSettings(), holder, poll=False)
    drift = app.state.drift
    loaded = holder.current
    assert loaded is not None
    metrics = next(m for m in app.user_middleware if "metrics" in m.kwargs).kwargs["metrics"]
    ids = next(m for m in app.user_middleware if "ids" in m.kwargs).kwargs["ids"]

    loop = asyncio.new_event_loop()
    ours, floor = _app_call(app, BODY), _app_call(floor_app, BODY)
    n = args.requests
    _time_async(loop, ours, 2000)  # warm up: the first calls build FastAPI's caches
    _time_async(loop, floor, 2000)
    parsed = schemas.parse(BODY, 10_000)
    features = parsed.features  # type: ignore[union-attr]
    rows = np.array([features])
    one = answer_one(loaded, features, drift, ids)
    whole = {**one, "model": {"name": "iris-classifier", "version": "1"}}
    child = metrics.requests.labels("200")
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("parse and validate the body (schemas.parse)", lambda: schemas.parse(BODY, 10_000)),
        ("the input array, float32", lambda: np.array([features], dtype=np.float32)),
        ("onnxruntime's run alone", lambda: loaded.predict_proba(rows.astype(np.float32))),
        (
            "one-row answer, plain floats (answer_one, with drift)",
            lambda: answer_one(loaded, features, drift, ids),
        ),
        ("the prediction's id alone (Ids.one)", lambda: ids.one("1", features, 0)),
        (
            "the drift bookkeeping alone (observe_one)",
            lambda: drift.observe_one("1", features, 0, {}),
        ),
        (
            "batch answer of one row, numpy (answer, with drift)",
            lambda: answer(loaded, rows, drift, ids),
        ),
        ("renormalise + argmax in numpy (scores)", lambda: scores(loaded, rows)),
        ("encode the answer (orjson.dumps)", lambda: orjson.dumps(whole)),
        ("request counter (labels + inc)", lambda: metrics.requests.labels("200").inc()),
        ("request counter (child.inc)", child.inc),
        ("latency histogram (observe)", lambda: metrics.duration.observe(0.0003)),
    ]
    table: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        table.setdefault("whole /predict (our app, ASGI)", []).append(_time_async(loop, ours, n))
        table.setdefault("the floor's /predict (floor.py, ASGI)", []).append(
            _time_async(loop, floor, n)
        )
        for name, fn in steps:
            table.setdefault(name, []).append(_time(fn, n))
    loop.close()

    print(f"\n/predict, one row, in-process; median of {args.rounds} rounds of {n:,} calls\n")
    print("| step | µs a request |")
    print("|---|---|")
    for name, samples in table.items():
        print(f"| {name} | {statistics.median(samples):.1f} |")
    ours_us = statistics.median(table["whole /predict (our app, ASGI)"])
    floor_us = statistics.median(table["the floor's /predict (floor.py, ASGI)"])
    print(f"\nours minus floor: {ours_us - floor_us:.1f} µs a request (the app's own work)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
