"""Labels for predictions: the ids (common/feedback_ids.py), ``POST /feedback`` and its spool
(api/feedback.py), and the batches in MLflow's artifact store (common/feedback_store.py), against
a real MLflow server; the crash and stop tests run the real API process over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from iris_services.api import feedback
from iris_services.api.app import create_app
from iris_services.common.feedback_ids import ID_CHARS, Ids, derive_key
from iris_services.common.feedback_store import FeedbackStore, decode
from iris_services.common.settings import ApiSettings
from tests.conftest import free_port, stop_group, wait_until

NOW = 1_800_000_000.0
KEY = derive_key(b"k" * 32)


def _ids(at: float = NOW) -> Ids:
    return Ids(KEY, clock=lambda: at)


def test_an_id_says_what_was_predicted_and_refuses_everything_else():
    ids = _ids()
    token = ids.one("7", [5.1, 3.5, 1.4, 0.2], 2)
    assert len(token) == ID_CHARS and token.isascii()
    issued = ids.read(token, 3600)
    assert issued is not None
    assert (issued.version, issued.predicted, issued.values) == ("7", 2, (5.1, 3.5, 1.4, 0.2))
    assert ids.one("7", [5.1, 3.5, 1.4, 0.2], 2) != token  # the same prediction, its own id
    flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    assert ids.read(flipped, 3600) is None  # forged
    assert Ids(derive_key(b"j" * 32), clock=lambda: NOW).read(token, 3600) is None  # foreign
    assert _ids(NOW + 3601).read(token, 3600) is None  # expired
    assert _ids(NOW + 3601).read(token, None) is not None  # the trainer reads any age
    assert _ids(NOW - 3600).read(token, 3600) is None  # from the future
    for junk in ("", "x", token[:-1], token + "A", "é" * ID_CHARS, "=" * ID_CHARS):
        assert ids.read(junk, 3600) is None


def test_a_batch_of_ids_holds_each_row():
    rows = np.random.default_rng(0).uniform(0, 8, size=(1000, 4))
    predicted = np.arange(1000) % 3
    made = _ids().many("12", rows, predicted)
    assert len(set(made)) == 1000
    for token, row, cls in zip(made, rows.tolist(), predicted.tolist(), strict=True):
        issued = _ids().read(token, 60)
        assert issued is not None and list(issued.values) == row and issued.predicted == cls


@pytest.fixture
def client(empty_holder, tmp_path):
    settings = ApiSettings(feedback_spool_dir=str(tmp_path / "spool"))
    app = create_app(settings, empty_holder, poll=False)
    assert empty_holder.refresh()
    with TestClient(app) as c:
        yield c


def _metric(client: TestClient, outcome: str, version: str = "3") -> float | None:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'iris_api_feedback_total{{outcome="{outcome}",version="{version}"}}'):
            return float(line.split()[-1])
    return None


def test_labels_are_counted_once_and_unknown_ids_are_named(client):
    # The served version's both outcomes exist before any label (increase() needs the 0).
    assert _metric(client, "correct") == 0.0 and _metric(client, "wrong") == 0.0
    one = client.post("/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}).json()
    batch = client.post("/predict", json={"instances": [[6.7, 3.0, 5.2, 2.3]] * 3}).json()
    assert one["prediction"] == "setosa"
    right, *others = [one["id"]] + [p["id"] for p in batch["predictions"]]
    foreign = Ids(derive_key(b"j" * 32)).one("3", [1, 2, 3, 4], 0)
    labels = [{"id": right, "label": "setosa"}]
    labels += [{"id": i, "label": "setosa"} for i in others]  # wrong: they were virginica
    labels += [{"id": foreign, "label": "setosa"}, {"id": right, "label": "virginica"}]
    answer = client.post("/feedback", json={"labels": labels})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": 4, "duplicates": [right], "unknown": [foreign]}
    assert _metric(client, "correct") == 1.0 and _metric(client, "wrong") == 3.0
    again = client.post("/feedback", json={"labels": labels[:2]}).json()
    assert again == {"accepted": 0, "duplicates": [right, others[0]], "unknown": []}
    assert _metric(client, "correct") == 1.0 and _metric(client, "wrong") == 3.0


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"labels": [{"id": "x", "label": "rose"}]}, 422, "'rose' is not a class"),
        ({"labels": [{"id": "x"}]}, 422, 'exactly "id" and "label"'),
        ({"labels": [{"id": 1, "label": "setosa"}]}, 422, "must be strings"),
        ({"labels": []}, 422, "at least one"),
        ({"labels": "x"}, 422, "at least one"),
        ({"labels": [], "more": 1}, 422, 'one key, "labels"'),
        ([], 422, 'one key, "labels"'),
        ({"labels": [{"id": "x", "label": "setosa"}] * 10_001}, 413, "at most 10000"),
    ],
)
def test_bad_feedback_is_refused_with_a_message_and_changes_nothing(client, body, status, words):
    answer = client.post("/feedback", json=body)
    assert answer.status_code == status and words in answer.json()["detail"]
    assert _metric(client, "correct") == 0.0 and _metric(client, "wrong") == 0.0


def test_feedback_wants_json(client):
    bad = client.post("/feedback", content=b"{", headers={"content-type": "application/json"})
    assert bad.status_code == 422 and "not valid JSON" in bad.json()["detail"]
    form = client.post("/feedback", content=b"labels=x", headers={"content-type": "text/plain"})
    assert form.status_code == 415


def test_the_workers_spool_counts_an_id_once_whoever_receives_it(tmp_path):
    """Two spools on one directory (two workers' connections) labelling the same ids from 8
    threads at once: each id is accepted once in all."""
    made = _ids().many("1", np.ones((200, 4)), np.zeros(200, dtype=int))
    spools = [feedback.Spool(tmp_path, _ids(), 3600) for _ in range(2)]
    accepted = []

    def label(spool: feedback.Spool) -> None:
        out = spool.accept([(i, "setosa") for i in made], NOW)
        accepted.append(len(out.accepted))

    threads = [threading.Thread(target=label, args=(spools[n % 2],)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(accepted) == 200
    assert oct((tmp_path / feedback.SPOOL_FILE).stat().st_mode & 0o777) == "0o600"


def test_batches_reach_the_store_and_other_replicas_see_them(tmp_path, mlflow_server):
    store = FeedbackStore(mlflow_server.url, "iris-fb-replicas")
    made = _ids().many("1", np.ones((5, 4)), np.zeros(5, dtype=int))
    here = feedback.Flusher(feedback.Spool(tmp_path / "a", _ids(), 3600), store, lambda: NOW)
    there = feedback.Flusher(feedback.Spool(tmp_path / "b", _ids(), 3600), store, lambda: NOW)
    assert len(here.spool.accept([(i, "versicolor") for i in made[:3]], NOW).accepted) == 3
    assert here.spool.pending() == 3
    assert here.run_once()
    assert here.spool.pending() == 0
    [day] = store.days()
    [name] = store.names(day)
    assert sorted(x.id for x in decode(store.get(name))) == sorted(made[:3])
    assert there.run_once()  # reads the other replica's batch
    out = there.spool.accept([(i, "setosa") for i in made], NOW)
    assert sorted(out.duplicates) == sorted(made[:3]) and len(out.accepted) == 2


def test_a_flush_cut_short_is_finished_under_the_same_name(tmp_path, mlflow_server):
    """A worker that dies after naming a batch (or after writing it, before noting so) leaves
    it to the next round, which writes the same bytes under the same name: one object."""
    store = FeedbackStore(mlflow_server.url, "iris-fb-cut-short")
    made = _ids().many("1", np.ones((4, 4)), np.zeros(4, dtype=int))
    spool = feedback.Spool(tmp_path, _ids(), 3600)
    spool.accept([(i, "setosa") for i in made], NOW)
    name = spool.claim(NOW)  # ... and the worker dies
    assert name is not None
    first = spool.body(name)
    store.put(name, first)  # a worker that died before marking it stored
    assert feedback.Flusher(feedback.Spool(tmp_path, _ids(), 3600), store, lambda: NOW).run_once()
    assert store.names(name.split("/")[0]) == [name]
    assert store.get(name) == first
    assert spool.pending() == 0


def _api(
    tmp_path: Path, mlflow_url: str, flush_s: float, spool: str = "spool"
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": mlflow_url,
        "IRIS_MODEL_NAME": "iris-fb-crash",
        "PORT": str(port),
        "IRIS_FEEDBACK_SPOOL_DIR": str(tmp_path / spool),
        "IRIS_FEEDBACK_FLUSH_SECONDS": str(flush_s),
        "IRIS_STARTUP_LOAD_TIMEOUT_SECONDS": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "iris_services.api"],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "api.log", "ab"),  # noqa: SIM115
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(f"{url}/healthz"), 60, what="the API")
    return proc, url


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _stored(store: FeedbackStore) -> set[str]:
    return {x.id for day in store.days() for n in store.names(day) for x in decode(store.get(n))}


def test_a_killed_api_loses_no_accepted_label_and_a_stopped_one_stores_them(
    tmp_path, mlflow_server, signing_key
):
    """Labels are accepted (no model needed) by the real API process; SIGKILL before any flush,
    and the restarted API stores them. An API with an empty spool (a new pod) knows the stored
    ids as soon as it serves. A SIGTERM stores what is left before the API exits."""
    ids = Ids(derive_key(signing_key))
    made = ids.many("1", np.ones((3, 4)), np.zeros(3, dtype=int))
    store = FeedbackStore(mlflow_server.url, "iris-fb-crash")
    proc, url = _api(tmp_path, mlflow_server.url, flush_s=3600)
    try:
        answer = httpx.post(
            f"{url}/feedback", json={"labels": [{"id": made[0], "label": "setosa"}]}
        )
        assert answer.json() == {"accepted": 1, "duplicates": [], "unknown": []}
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert _stored(store) == set()
        proc, url = _api(tmp_path, mlflow_server.url, flush_s=0.2)
        wait_until(lambda: _stored(store) == {made[0]}, 30, what="the spooled label stored")
        stop_group(proc)
        # A new pod: an empty spool. What the store holds is read before it serves.
        proc, url = _api(tmp_path, mlflow_server.url, flush_s=3600, spool="new-pod")
        labels = [{"id": i, "label": "setosa"} for i in made]
        answer = httpx.post(f"{url}/feedback", json={"labels": labels}).json()
        assert answer == {"accepted": 2, "duplicates": [made[0]], "unknown": []}
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        assert _stored(store) == set(made)
    finally:
        stop_group(proc)
