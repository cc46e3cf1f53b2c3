"""Input drift: the trainer's reference profile, the API's window, PSI, warnings and metrics.

The pure parts (profile, Window, psi, warnings) run on the Iris data itself; the fetch runs
against a real MLflow server; the API's hook through the real app (in process and, for the
aggregation across workers, as the real two-worker entry point).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from prometheus_client import CollectorRegistry
from sklearn.datasets import load_iris

from iris_services.api import drift, mlflow_rest
from iris_services.api.app import create_app
from iris_services.api.drift import DriftMonitor, Reference, Window
from iris_services.api.model_holder import ModelHolder
from iris_services.common.names import CLASS_NAMES, FEATURE_NAMES, REFERENCE_PROFILE_ARTIFACT
from iris_services.common.settings import ApiSettings, TrainerSettings
from iris_services.train import pipeline, profile, publish
from tests.conftest import http_ok, wait_until
from tests.services.test_api import SETOSA, FakeRegistry, api_process

IRIS = load_iris()


def iris_profile(seed: int = 4) -> dict:
    data = pipeline.load_dataset(seed)
    return profile.reference_profile(data.x_train, data.y_train, FEATURE_NAMES, CLASS_NAMES)


def reference(seed: int = 4, version: str = "1") -> Reference:
    return Reference.from_profile(version, iris_profile(seed))


def filled(ref: Reference, rows: np.ndarray) -> Window:
    w = Window(ref, max_rows=len(rows), max_age_s=3600)
    w.add(rows, 0.0)
    return w


def window_psi(ref: Reference, rows: np.ndarray) -> dict[str, float]:
    return filled(ref, rows).psi()


# -- the reference profile ---------------------------------------------------------------------


def test_profile_holds_edges_counts_range_and_priors_as_json():
    data = pipeline.load_dataset(4)
    p = json.loads(json.dumps(iris_profile(4)))  # JSON-serialisable, unchanged by a round trip
    assert p["rows"] == 120 and p["feature_order"] == list(FEATURE_NAMES)
    for i, name in enumerate(FEATURE_NAMES):
        f = p["features"][name]
        assert f["edges"] == sorted(set(f["edges"])) and 1 <= len(f["edges"]) <= 9
        assert len(f["counts"]) == len(f["edges"]) + 1 and sum(f["counts"]) == 120
        assert f["min"] == data.x_train[:, i].min() and f["max"] == data.x_train[:, i].max()
    assert p["class_priors"] == pytest.approx({c: 1 / 3 for c in CLASS_NAMES})


def test_profile_bins_are_roughly_deciles():
    p = iris_profile(4)
    # Iris is measured to 0.1 cm: ties merge some edges, but no bin holds most of the rows.
    for f in p["features"].values():
        assert max(f["counts"]) < 0.4 * p["rows"]


def test_profile_rejects_rows_of_the_wrong_shape():
    with pytest.raises(ValueError):
        profile.reference_profile(np.zeros((3, 3)), np.zeros(3), FEATURE_NAMES, CLASS_NAMES)
    with pytest.raises(ValueError):
        profile.reference_profile(np.zeros((0, 4)), np.zeros(0), FEATURE_NAMES, CLASS_NAMES)


def test_a_profile_that_does_not_add_up_is_refused():
    p = iris_profile()
    p["features"]["petal_length"]["counts"].pop()
    with pytest.raises(ValueError, match="petal_length"):
        Reference.from_profile("1", p)
    with pytest.raises(ValueError):
        Reference.from_profile("1", {"features": {}})


# -- PSI: the measure, and the thresholds chosen from the data -----------------------------------


def test_psi_is_zero_for_the_same_shares_and_grows_with_the_shift():
    assert drift.psi([0.5, 0.5], [10, 10]) == pytest.approx(0.0)
    small, large = drift.psi([0.5, 0.5], [12, 8]), drift.psi([0.5, 0.5], [19, 1])
    assert 0 < small < large
    assert drift.psi([0.5, 0.5], [0, 0]) is None
    # An empty bin counts as EPSILON: finite, large.
    assert math.isfinite(drift.psi([0.5, 0.5], [20, 0]))


def test_the_training_rows_have_no_drift_against_their_own_profile():
    data = pipeline.load_dataset(4)
    psis = window_psi(reference(4), data.x_train)
    assert set(psis) == set(FEATURE_NAMES)
    assert max(psis.values()) == pytest.approx(0.0, abs=1e-12)


def test_min_rows_default_keeps_unshifted_windows_below_the_threshold():
    """Why ``drift_min_rows`` is 500: windows of 500 rows drawn from the Iris data itself, against
    the profiles of 20 training splits, never reach PSI 0.2 (max ~0.11); windows of 50 do."""
    settings = ApiSettings()
    rng = np.random.default_rng(0)
    worst = {50: 0.0, settings.drift_min_rows: 0.0}
    for seed in range(20):
        ref = reference(seed)
        for n in worst:
            for _ in range(5):
                rows = IRIS.data[rng.integers(0, len(IRIS.data), n)]
                worst[n] = max(worst[n], *window_psi(ref, rows).values())
    assert worst[settings.drift_min_rows] < 0.75 * settings.drift_psi_threshold
    assert worst[50] > settings.drift_psi_threshold  # why a handful of rows must not alert


def test_doubled_petal_lengths_drift_far_beyond_the_threshold_on_that_feature_only():
    shifted = IRIS.data.copy()
    shifted[:, 2] *= 2
    psis = window_psi(reference(4), shifted)
    assert psis["petal_length"] > 10 * ApiSettings().drift_psi_threshold
    assert max(v for k, v in psis.items() if k != "petal_length") < 0.1


# -- the window --------------------------------------------------------------------------------


def test_window_keeps_exactly_the_last_rows():
    ref = reference()
    w = Window(ref, max_rows=3, max_age_s=3600)
    for t in range(5):
        w.add(np.array([SETOSA]), float(t))
    assert w.rows == 3 and all(sum(c) == 3 for c in w.counts)
    w.add(IRIS.data[:10], 5.0)  # larger than the window: only its last 3 rows stay
    assert w.counts == filled(ref, IRIS.data[7:10]).counts
    w.add(IRIS.data[100:102], 6.0)  # the oldest chunk gives up 2 of its 3 rows
    assert w.rows == 3
    assert w.counts == filled(ref, np.vstack([IRIS.data[9:10], IRIS.data[100:102]])).counts


def test_window_forgets_rows_older_than_its_age():
    w = Window(reference(), max_rows=100, max_age_s=60)
    w.add(np.array([SETOSA]), 0.0)
    w.add(IRIS.data[:5], 30.0)
    w.expire(61.0)
    assert w.rows == 5 and all(sum(c) == 5 for c in w.counts)
    w.expire(91.0)
    assert w.rows == 0 and all(sum(c) == 0 for c in w.counts)


def test_rows_added_one_at_a_time_bin_as_one_batch():
    ref = reference()
    one, many = Window(ref, 1000, 3600), Window(ref, 1000, 3600)
    for row in IRIS.data:
        one.add(np.array([row]), 0.0)
    many.add(IRIS.data, 0.0)
    assert one.counts == many.counts and one.rows == many.rows == 150


# -- warnings ----------------------------------------------------------------------------------


def test_warnings_name_the_feature_the_value_and_the_training_range():
    ref = reference()
    low, high = ref.low[2], ref.high[2]
    assert drift.row_warnings(SETOSA, ref) == []
    assert drift.row_warnings([5.1, 3.5, 30.0, 0.2], ref) == [
        f"petal_length 30.0 is outside the training range {low}–{high}"  # noqa: RUF001
    ]
    assert drift.row_warnings([-1, 3.5, 1.4, 0.2], ref) == [
        "sepal_length -1.0 is negative: no length or width can be"
    ]
    assert drift.row_warnings([-1, 3.5, 1.4, 0.2], None) == [
        "sepal_length -1.0 is negative: no length or width can be"
    ]


# -- the monitor, as the API uses it -----------------------------------------------------------


class Drive:
    """A DriftMonitor with a fake fetch and a clock the test moves."""

    def __init__(self, **settings: object) -> None:
        self.now = 0.0
        self.profiles: dict[str, dict | None] = {"1": iris_profile(4), "2": iris_profile(7)}
        self.fetched: list[str] = []
        self.registry = CollectorRegistry()
        self.monitor = DriftMonitor(
            ApiSettings(**settings),
            self.registry,
            fetch=self.fetch,
            clock=lambda: self.now,
        )

    def fetch(self, name: str, version: str) -> dict | None:
        self.fetched.append(version)
        return self.profiles[version]

    def serve(self, version: str) -> None:
        new = SimpleNamespace(champion=SimpleNamespace(name="iris-classifier", version=version))
        self.monitor.swapped(None, new)
        self.monitor.tick()

    def send(self, version: str, rows: list[list[float]], ok: bool = True) -> list[dict]:
        answers: list[dict] = [{} for _ in rows]
        arr = np.array(rows, dtype=float)
        best = np.zeros(len(rows), dtype=int)
        self.monitor.observe(version, arr, best, answers)
        assert self.monitor._failed != ok, "the bookkeeping failed" if ok else "it did not fail"
        return answers

    def value(self, name: str, **labels: str) -> float | None:
        self.monitor.publish()
        return self.registry.get_sample_value(name, labels)


def test_monitor_counts_rows_warns_and_exports_psi_after_publishing():
    d = Drive()
    d.serve("1")
    assert d.fetched == ["1"] and d.value("iris_api_drift_reference_loaded") == 1
    answers = d.send("1", [SETOSA, [5.1, 3.5, 30.0, 0.2]])
    assert "warnings" not in answers[0] and "petal_length 30.0" in answers[1]["warnings"][0]
    assert d.send("1", [[-1.0, 3.5, 1.4, 0.2]])[0]["warnings"]
    assert d.value("iris_api_drift_window_rows") == 3
    assert d.value("iris_api_predictions_total", **{"class": "setosa"}) == 3
    assert d.value("iris_api_predictions_total", **{"class": "virginica"}) == 0
    assert d.value("iris_api_inputs_out_of_range_total", feature="petal_length") == 1
    assert d.value("iris_api_inputs_out_of_range_total", feature="sepal_length") == 1
    assert d.value("iris_api_feature_psi", feature="petal_length") > 0.2
    assert d.value("iris_api_drift_psi_threshold") == 0.2
    assert d.value("iris_api_drift_min_window_rows") == 500


def test_a_new_champion_resets_the_window_and_fetches_its_profile():
    d = Drive()
    d.serve("1")
    d.send("1", IRIS.data.tolist())
    assert d.value("iris_api_drift_window_rows") == 150
    d.serve("2")
    assert d.fetched == ["1", "2"] and d.monitor.reference.version == "2"
    assert d.value("iris_api_drift_window_rows") == 0
    assert d.value("iris_api_feature_psi", feature="petal_length") is None  # nothing to compare
    d.send("2", IRIS.data.tolist())
    assert d.value("iris_api_drift_window_rows") == 150


def test_rows_of_a_champion_the_monitor_was_not_told_about_reset_it_too():
    d = Drive()
    d.serve("1")
    d.send("1", [SETOSA])
    d.send("2", [SETOSA])  # the swap hook has not run yet: counted for the class mix only
    assert d.value("iris_api_drift_window_rows") == 0
    assert d.value("iris_api_predictions_total", **{"class": "setosa"}) == 2
    d.monitor.tick()
    assert d.fetched == ["1", "2"] and d.monitor.reference.version == "2"


def test_late_answers_of_the_replaced_champion_count_for_the_mix_but_not_the_window():
    """A request that read the old model before the swap hook ran notes its rows after it."""
    d = Drive()
    d.serve("1")
    d.serve("2")
    d.send("2", [SETOSA, SETOSA])
    late = d.send("1", [[5.1, 3.5, 30.0, 0.2]])
    d.send("2", [SETOSA])
    assert "petal_length 30.0" in late[0]["warnings"][0]
    assert d.value("iris_api_drift_window_rows") == 3  # v1's row is not in v2's window
    assert d.value("iris_api_predictions_total", **{"class": "setosa"}) == 4
    assert d.value("iris_api_inputs_out_of_range_total", feature="petal_length") == 1
    assert d.fetched == ["1", "2"] and d.monitor.reference.version == "2"


def test_a_stalled_tick_never_lets_the_pending_rows_grow_without_bound():
    d = Drive()
    d.serve("1")
    for _ in range(drift.MAX_PENDING + 5):
        d.send("1", [SETOSA])
    assert len(d.monitor._best) < drift.MAX_PENDING  # drained inline, not lost
    assert d.value("iris_api_drift_window_rows") == drift.MAX_PENDING + 5


def test_a_champion_without_profile_is_answered_and_warned_about_negatives_only():
    d = Drive()
    d.profiles["1"] = None
    d.serve("1")
    assert d.value("iris_api_drift_reference_loaded") == 0
    answers = d.send("1", [[5.1, 3.5, 30.0, 0.2], [-5.1, 3.5, 1.4, 0.2]])
    assert "warnings" not in answers[0] and answers[1]["warnings"]
    assert d.value("iris_api_feature_psi", feature="petal_length") is None
    d.monitor.tick()  # no new fetch before RETRY_S
    assert d.fetched == ["1"]
    d.now += drift.RETRY_S + 1
    d.monitor.tick()
    assert d.fetched == ["1", "1"]


def test_a_failing_fetch_is_retried_and_never_fails_a_request():
    d = Drive()

    def broken(name: str, version: str) -> dict:
        raise httpx.ConnectError("mlflow is down")

    d.monitor._fetch = broken
    d.serve("1")
    assert d.send("1", [SETOSA]) == [{}]
    d.monitor._fetch = d.fetch
    d.now += drift.RETRY_S + 1
    d.monitor.tick()
    assert d.monitor.reference is not None


def test_window_is_split_over_the_workers_and_ages_out():
    d = Drive(drift_window_rows=100, workers=4, drift_window_s=60)
    d.serve("1")
    for _ in range(40):
        d.send("1", [SETOSA])
    assert d.value("iris_api_drift_window_rows") == 25  # this worker's quarter
    d.now += 61
    assert d.value("iris_api_drift_window_rows") == 0


def test_disabled_bookkeeping_does_nothing():
    d = Drive(drift_enabled=False)
    d.serve("1")
    assert d.send("1", [[5.1, 3.5, 30.0, 0.2]]) == [{}] and d.fetched == []
    assert d.value("iris_api_drift_window_rows") is None


def test_a_bookkeeping_bug_never_fails_the_request(caplog):
    d = Drive()
    d.serve("1")
    answers = d.send("1", [[1.0, 2.0]], ok=False)  # a row the API never passes: it trips
    assert answers == [{}] and "drift bookkeeping failed" in caplog.text


def test_a_bookkeeping_bug_in_the_tick_never_fails_a_scrape(caplog):
    d = Drive()
    d.serve("1")
    d.send("1", [SETOSA])
    d.monitor._flat.append(1.0)  # a bug: the noted values no longer make whole rows
    assert d.value("iris_api_drift_window_rows") == 0  # published all the same
    assert "drift bookkeeping failed" in caplog.text


# -- the fetch, against the real MLflow server -------------------------------------------------


def test_trainer_logs_the_profile_and_the_api_fetches_it_over_rest(service_env, mlflow_server):
    summary = publish.run(TrainerSettings())
    name = service_env["IRIS_MODEL_NAME"]
    fetched = drift.fetch_reference(mlflow_server.url, name, summary.version)
    assert fetched == iris_profile(pipeline.SPLIT_SEED)  # the fixed held-out split's training rows
    # Stored in the version's logged model, beside its ONNX graph.
    source = MlflowClient(mlflow_server.url).get_model_version(name, summary.version).source
    stored = [p for p in Path(mlflow_server.root).rglob(REFERENCE_PROFILE_ARTIFACT)]
    mine = [p for p in stored if source.removeprefix("models:/") in str(p)]
    assert len(mine) == 1 and (mine[0].parent / "model.onnx").exists()
    mine[0].unlink()  # a version trained before there were profiles: None
    assert drift.fetch_reference(mlflow_server.url, name, summary.version) is None
    with pytest.raises(httpx.HTTPStatusError):
        drift.fetch_reference(mlflow_server.url, name, "99")


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("mlflow-artifacts:/1/abc/artifacts", "1/abc/artifacts"),
        ("mlflow-artifacts://mlflow-service:5000/1/abc/artifacts", "1/abc/artifacts"),
        ("http://h:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts", "1/abc/artifacts"),
    ],
)
def test_proxied_artifact_roots_map_to_the_download_path(uri, path):
    assert mlflow_rest.artifact_path(uri) == path


def test_an_artifact_root_the_server_does_not_proxy_is_an_error():
    with pytest.raises(mlflow_rest.RegistryError, match="serve-artifacts"):
        mlflow_rest.artifact_path("s3://bucket/1/abc/artifacts")


# -- through the app ---------------------------------------------------------------------------


def test_the_api_answers_odd_rows_with_warnings_and_counts_them():
    fake = FakeRegistry()
    holder = ModelHolder(fake)
    app = create_app(ApiSettings(), holder, poll=False, fetch_reference=lambda n, v: iris_profile())
    client = TestClient(app)
    fake.promote("1")
    holder.refresh()
    app.state.drift.tick()
    assert "warnings" not in client.post("/predict", json={"features": SETOSA}).json()
    odd = client.post("/predict", json={"features": [-1, 3.5, 1.4, 0.2]}).json()
    assert odd["prediction"] in CLASS_NAMES and odd["warnings"] == [
        "sepal_length -1.0 is negative: no length or width can be"
    ]
    batch = client.post("/predict", json={"instances": [SETOSA, [5.1, 3.5, 30, 0.2]]}).json()
    assert "warnings" not in batch["predictions"][0]
    assert batch["predictions"][1]["warnings"][0].startswith("petal_length 30.0 is outside")
    text = client.get("/metrics").text
    assert "iris_api_drift_window_rows 4.0" in text
    assert 'iris_api_inputs_out_of_range_total{feature="petal_length"} 1.0' in text
    assert 'iris_api_feature_psi{feature="petal_length"}' in text


def test_the_first_answer_of_a_new_champion_already_has_its_range_warnings():
    """The reference profile is fetched while the new champion loads, before it serves: the
    first answer after a swap carries the training-range warning, with no drift tick between
    (there was up to a tick, ~1 s, of answers without it: a user's first `predict` after
    `up` could miss it)."""
    fake = FakeRegistry()
    holder = ModelHolder(fake)
    fetched = []

    def fetch(name: str, version: str) -> dict:
        fetched.append(version)
        return iris_profile()

    app = create_app(ApiSettings(), holder, poll=False, fetch_reference=fetch)
    client = TestClient(app)
    fake.promote("1")
    holder.refresh()  # no tick runs here (poll=False)
    odd = client.post("/predict", json={"features": [5.1, 3.5, 30, 0.2]}).json()
    assert odd["warnings"][0].startswith("petal_length 30.0 is outside the training range")
    assert fetched == ["1"]
    app.state.drift.tick()
    assert fetched == ["1"]  # not fetched again


def test_two_workers_report_one_window_and_its_psi(service_env):
    """The real entry point with 2 workers: the window's rows and bins are every worker's, and
    the PSI is computed over them, whichever worker answers the scrape."""
    publish.run(TrainerSettings())
    shifted = IRIS.data.copy()
    shifted[:, 2] *= 2
    with api_process(2, IRIS_POLL_SECONDS="1") as url:
        wait_until(lambda: http_ok(f"{url}/readyz"), 90, 0.3, "the API to load the champion")
        wait_until(
            lambda: _metric(url, "iris_api_drift_reference_loaded") == 1.0,
            30,
            0.3,
            "every worker to fetch the reference profile",
        )
        n = 0
        for _ in range(20):  # fresh connections: both workers get some
            with httpx.Client(timeout=10) as fresh:
                assert fresh.post(f"{url}/predict", json={"instances": shifted[:10].tolist()})
                n += 10
        # Each worker publishes within a second; then every scrape sees the whole API's window.
        wait_until(lambda: _metric(url, "iris_api_drift_window_rows") == n, 10, 0.2, "publish")
        for _ in range(6):
            assert _metric(url, "iris_api_drift_window_rows") == n
            psi = _metric(url, 'iris_api_feature_psi{feature="petal_length"}')
            assert psi is not None and psi > 1.0
            classes = [f'iris_api_predictions_total{{class="{c}"}}' for c in CLASS_NAMES]
            assert sum(_metric(url, c) or 0 for c in classes) == n


def _metric(url: str, series: str) -> float | None:
    """One series' value, exactly as the exposition names it, from a fresh connection."""
    with httpx.Client(timeout=5) as fresh:
        for line in fresh.get(f"{url}/metrics").text.splitlines():
            if line.rsplit(" ", 1)[0] == series:
                return float(line.rsplit(" ", 1)[1])
    return None
