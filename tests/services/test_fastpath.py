"""The hot path of /predict (api/fastpath.py) answers exactly what the route would.

Its one-row answer is built in plain floats (``answers.answer_one``), the route's batch answer in
numpy (``answers.answer``): the two must agree value for value on any row, warnings included.
And a 200 from the fast path must be indistinguishable on the wire from the route's own.
"""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from iris_services.api.answers import answer, answer_one
from iris_services.api.app import create_app
from iris_services.api.drift import DriftMonitor
from iris_services.common.feedback_ids import ID_CHARS, Ids, derive_key
from iris_services.common.names import CLASS_NAMES
from iris_services.common.settings import ApiSettings

value = st.floats(min_value=-1.0, max_value=12.0, allow_nan=False, width=64)


@settings(max_examples=300, deadline=None)
@given(row=st.lists(value, min_size=4, max_size=4))
def test_the_one_row_answer_equals_the_batch_answer_of_that_row(holder, row):
    loaded = holder.current
    assert loaded is not None
    # Negative values carry warnings (no reference profile here, so no range warnings).
    drift = DriftMonitor(ApiSettings(), CollectorRegistry())
    one = answer_one(loaded, list(row), drift, IDS)
    batch = answer(loaded, np.array([row]), drift, IDS)[0]
    # Each prediction has its own id (a random nonce), saying the same about it.
    assert IDS.read(one.pop("id"), None) == IDS.read(batch.pop("id"), None)
    assert one == batch
    assert list(one) == list(batch)  # the same keys in the same order: the same JSON bytes


IDS = Ids(derive_key(b"k" * 32), clock=lambda: 1_800_000_000.0)


def _bytes_but_the_id(response) -> bytes:
    ident = response.json()["id"]
    assert len(ident) == ID_CHARS
    return response.content.replace(ident.encode(), b"")


def test_a_fast_200_is_the_routes_200_on_the_wire(holder):
    """Same status, headers and body as the route: a body with a media-type parameter is still
    the fast path's; the route answers the same row when the fast path is not installed."""
    app = create_app(ApiSettings(), holder, poll=False)
    route_only = create_app(ApiSettings(), holder, poll=False)
    route_only.user_middleware = [
        m for m in route_only.user_middleware if m.cls.__name__ != "PredictFastPath"
    ]
    body = b'{"features": [5.1, 3.5, 1.4, 0.2]}'
    for headers in (
        {"content-type": "application/json"},
        {"content-type": "Application/JSON; charset=utf-8"},
    ):
        fast = TestClient(app).post("/predict", content=body, headers=headers)
        slow = TestClient(route_only).post("/predict", content=body, headers=headers)
        assert fast.status_code == slow.status_code == 200
        # The same bytes but for the id (each prediction's own; the same length).
        assert _bytes_but_the_id(fast) == _bytes_but_the_id(slow)
        assert list(fast.headers.items()) == list(slow.headers.items())


def test_what_the_fast_path_does_not_answer_reaches_the_route_whole(holder):
    """A bad body, a batch over the row limit and an oversize body are the route's answers
    (422, 413, 413), counted once each; the bytes the fast path read are replayed."""
    client = TestClient(
        create_app(ApiSettings(max_body_bytes=1024, max_batch_rows=2), holder, poll=False)
    )
    assert client.post("/predict", json={"features": [1, 2, 3]}).status_code == 422
    assert client.post("/predict", json={"instances": [[1, 2, 3, 4]] * 3}).status_code == 413
    big = b'{"features": [5.1, 3.5, 1.4, 0.2], "pad": "' + b"x" * 2000 + b'"}'
    assert (
        client.post(
            "/predict", content=big, headers={"content-type": "application/json"}
        ).status_code
        == 413
    )
    ok = client.post("/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]] * 2})
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 2
    metrics = client.get("/metrics").text
    assert 'iris_api_requests_total{status="413"} 2.0' in metrics
    assert 'iris_api_requests_total{status="422"} 1.0' in metrics
    assert 'iris_api_requests_total{status="200"} 1.0' in metrics


def _csv_writer_answer(loaded, rows, drift, ids: list[str]) -> bytes:
    """The CSV answer as it was written before: csv.writer, row by row (with these ids)."""
    import csv
    import io

    from iris_services.api.answers import scores
    from iris_services.common.names import CLASS_NAMES

    proba, best = scores(loaded, rows)
    answers: list[dict] = [{} for _ in range(len(rows))]
    drift.observe(loaded.champion.version, rows, best, answers)
    out = io.StringIO()
    out.write("prediction," + ",".join(CLASS_NAMES) + ",warnings,id\n")
    writer = csv.writer(out, lineterminator="\n")
    for i, p, a, ident in zip(best, proba.tolist(), answers, ids, strict=True):
        writer.writerow((CLASS_NAMES[int(i)], *p, "; ".join(a.get("warnings", ())), ident))
    return out.getvalue().encode()


def test_the_csv_answer_is_what_csv_writer_writes(holder):
    """`predict --file`'s dense path formats lines itself: the same bytes as csv.writer, rows
    with warnings (negative values here) included."""
    from iris_services.api.app import _csv_answer

    loaded = holder.current
    rng = np.random.default_rng(0)
    rows = rng.uniform(-0.5, 8.0, size=(2_000, 4)).round(2)
    drift = DriftMonitor(ApiSettings(), CollectorRegistry())
    ours = _csv_answer(loaded, rows, drift, IDS)
    ids = [line.rsplit(",", 1)[1] for line in ours.decode().splitlines()[1:]]
    assert ours == _csv_writer_answer(loaded, rows, drift, ids)
    assert b"is negative" in ours  # the warnings path was exercised
    # Each row's id holds that row as sent and its class.
    for ident, row, line in zip(ids, rows.tolist(), ours.decode().splitlines()[1:], strict=True):
        issued = IDS.read(ident, None)
        assert issued is not None and list(issued.values) == row
        assert line.startswith(CLASS_NAMES[issued.predicted] + ",")
