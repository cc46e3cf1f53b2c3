"""The model API's HTTP contract (DESIGN.md), strict input handling and hot swap.

Contract tests use a registry fake at our own seam (``model_holder.Registry``) holding real
ONNX graphs compiled by the trainer's code; the swap tests use the real MLflow server's REST API
and real HTTP.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient

from iris_services.api.app import create_app
from iris_services.api.graph import GraphModel
from iris_services.api.mlflow_rest import DIGEST_TAG, RestRegistry
from iris_services.api.model_holder import ModelHolder
from iris_services.common import registry, signing
from iris_services.common.alias import Champion
from iris_services.common.settings import ApiSettings, TrainerSettings
from iris_services.train import onnx_export, pipeline, publish
from tests.conftest import free_port, http_ok, stop_group, wait_until

SETOSA = [5.1, 3.5, 1.4, 0.2]
CLASSES = ("setosa", "versicolor", "virginica")
IRIS = pipeline.load_dataset(0).x_train


class FakeRegistry:
    """Champions in memory; ``broken`` versions fail to load like missing artifacts do."""

    def __init__(self) -> None:
        self.champ: Champion | None = None
        self.models: dict[str, object] = {}
        self.broken: set[str] = set()

    def promote(self, version: str, seed: int = 4, model: object = None) -> None:
        model = model if model is not None else pipeline.train(seed).model
        graph = onnx_export.export(model, IRIS)
        self.models[version] = GraphModel(graph.onnx, graph.sha256)
        self.champ = Champion("iris-classifier", version, "champion", 0.97, time.time(), None, "")

    def champion(self) -> Champion | None:
        return self.champ

    def load(self, champion: Champion) -> object:
        if champion.version in self.broken:
            raise OSError('Could not find an "MLmodel" configuration file')
        return self.models[champion.version]


@pytest.fixture
def fake() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def client(fake: FakeRegistry) -> TestClient:
    holder = ModelHolder(fake)
    app = create_app(ApiSettings(max_body_bytes=64 * 1024, max_batch_rows=100), holder, poll=False)
    app.state.holder = holder
    return TestClient(app)


def refresh(client: TestClient) -> bool:
    return bool(client.app.state.holder.refresh())  # type: ignore[attr-defined]


def test_b1_no_champion_is_503_with_the_hint(client):
    resp = client.post("/predict", json={"features": SETOSA})
    assert resp.status_code == 503
    assert "irisctl train --now" in resp.json()["detail"]
    assert resp.headers["retry-after"]
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_single_prediction_matches_the_contract(client, fake):
    fake.promote("3")
    assert refresh(client)
    body = client.post("/predict", json={"features": SETOSA}).json()
    assert body["prediction"] == "setosa" and body["class_index"] == 0
    assert set(body["probabilities"]) == {"setosa", "versicolor", "virginica"}
    assert sum(body["probabilities"].values()) == pytest.approx(1.0)
    assert all(0.0 <= p <= 1.0 for p in body["probabilities"].values())  # not float32's 1+ε
    assert body["model"] == {"name": "iris-classifier", "version": "3"}


def test_batch_prediction(client, fake):
    fake.promote("1")
    refresh(client)
    rows = [SETOSA, [6.4, 3.2, 4.5, 1.5], [6.3, 3.3, 6.0, 2.5]]
    body = client.post("/predict", json={"instances": rows}).json()
    assert [p["prediction"] for p in body["predictions"]] == ["setosa", "versicolor", "virginica"]
    assert "model" not in body["predictions"][0] and body["model"]["version"] == "1"


def test_a4_integers_are_numbers(client, fake):
    fake.promote("1")
    refresh(client)
    assert client.post("/predict", json={"features": [5, 3, 1, 0]}).status_code == 200


@pytest.mark.parametrize(
    "raw",
    [
        b'{"features": [5.1, 3.5, 1.4]}',
        b'{"features": [5.1, 3.5, 1.4, 0.2, 9]}',
        b'{"features": [NaN, 3.5, 1.4, 0.2]}',
        b'{"features": [Infinity, 3.5, 1.4, 0.2]}',
        b'{"features": [-Infinity, 3.5, 1.4, 0.2]}',
        b'{"features": [1e999, 3.5, 1.4, 0.2]}',
        b'{"features": [1e300, 3.5, 1.4, 0.2]}',  # finite, but inf in the models' float32
        b'{"features": ["5.1", 3.5, 1.4, 0.2]}',
        b'{"features": [true, false, 1.4, 0.2]}',
        b'{"features": null}',
        b'{"features": [[5.1], 3.5, 1.4, 0.2]}',
        b'{"features": [5.1, 3.5, 1.4, 0.2], "extra": 1}',
        b'{"features": [5.1, 3.5, 1.4, 0.2], "features": [5.1, 3.5, 1.4, 0.2]}',
        b'{"feature": [5.1, 3.5, 1.4, 0.2]}',
        b'{"instances": []}',
        b'{"instances": [[5.1, 3.5, 1.4]]}',
        b'{"features": [5.1, 3.5, 1.4, 0.2',
        b"{}",
        b"[]",
        b"",
        b"\xff\xfe",
        b"[" * 60_000,  # deep nesting, under the 64 KiB limit of this fixture
    ],
)
def test_a3_a4_a5_bad_input_is_422_with_a_message_never_500(client, fake, raw):
    fake.promote("1")
    refresh(client)
    resp = client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert resp.status_code == 422, resp.text
    assert isinstance(resp.json()["detail"], str) and resp.json()["detail"]


def test_a3_bad_input_is_422_even_without_a_model(client):
    resp = client.post("/predict", json={"features": [1, 2]})
    assert resp.status_code == 422


def test_a6_oversize_body_is_413(client, fake):
    fake.promote("1")
    refresh(client)
    big = b'{"features": [' + b"1.0, " * 20_000 + b"1.0]}"
    assert client.post("/predict", content=big).status_code == 413


def test_a6_oversize_body_without_content_length_is_413(client, fake):
    fake.promote("1")
    refresh(client)

    def chunks():
        yield b'{"features": ['
        for _ in range(20_000):
            yield b"1.0, "
        yield b"1.0]}"

    assert client.post("/predict", content=chunks()).status_code == 413


def test_a6_too_many_rows_is_413(client, fake):
    fake.promote("1")
    refresh(client)
    resp = client.post("/predict", json={"instances": [SETOSA] * 101})
    assert resp.status_code == 413


def test_model_endpoint_and_metrics(client, fake):
    fake.promote("2")
    refresh(client)
    client.post("/predict", json={"features": SETOSA})
    client.post("/predict", json={"features": [1]})
    info = client.get("/model").json()
    assert info["name"] == "iris-classifier" and info["version"] == "2"
    assert info["alias"] == "champion" and info["accuracy"] == 0.97 and info["loaded_at"]
    assert info["graph_sha256"] == fake.models["2"].sha256 and len(info["graph_sha256"]) == 64
    text = client.get("/metrics").text
    assert 'iris_api_requests_total{status="200"} 1.0' in text
    assert 'iris_api_requests_total{status="422"} 1.0' in text
    assert "iris_api_request_duration_seconds_bucket" in text
    assert 'iris_api_model_version_info{version="2"} 1.0' in text


def test_openapi_describes_predict(client):
    spec = client.get("/openapi.json").json()
    assert "requestBody" in spec["paths"]["/predict"]["post"]


def test_b3_a_champion_that_fails_to_load_keeps_the_current_model(client, fake):
    fake.promote("1")
    refresh(client)
    fake.promote("2")
    fake.broken.add("2")
    assert not refresh(client)
    body = client.post("/predict", json={"features": SETOSA}).json()
    assert body["model"]["version"] == "1"
    info = client.get("/model").json()
    assert info["version"] == "1" and "version 2" in info["last_load_error"]
    assert "iris_api_model_load_failures_total 1.0" in client.get("/metrics").text
    assert client.get("/readyz").status_code == 200


def test_b3_a_champion_that_fails_the_smoke_test_is_not_served(client, fake):
    fake.promote("1")
    refresh(client)
    data = pipeline.load_dataset(0)
    mislabelled = pipeline.train(4).model.fit(data.x_train, (data.y_train + 1) % 3)
    fake.promote("2", model=mislabelled)
    assert not refresh(client)
    assert client.get("/model").json()["version"] == "1"


# -- against the real registry, over real HTTP -------------------------------------------------


class LiveServer:
    def __init__(self, app) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, access_log=False)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        wait_until(lambda: self.server.started, 20, what="uvicorn start")
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def rest(settings: ApiSettings, cache: Path) -> RestRegistry:
    key_file = os.environ[signing.KEY_FILE_ENV]
    return RestRegistry(
        settings.tracking_uri, settings.model_name, settings.model_alias, cache, key_file=key_file
    )


def test_b4_real_champion_is_served_and_swapped_under_load(service_env, tmp_path):
    settings = ApiSettings()
    publish.run(TrainerSettings())
    holder = ModelHolder(rest(settings, tmp_path))
    assert holder.refresh() and holder.current.champion.version == "1"
    app = create_app(settings, holder, poll=False)

    results: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def hammer(url: str) -> None:
        with httpx.Client(timeout=10) as http:
            for _ in range(50_000):  # bounded in count and in time (stop)
                if stop.is_set():
                    return
                try:
                    r = http.post(f"{url}/predict", json={"features": SETOSA})
                    results.append((r.status_code, r.json().get("model", {}).get("version")))
                except httpx.HTTPError:
                    results.append((0, None))

    with LiveServer(app) as url:
        workers = [threading.Thread(target=hammer, args=(url,)) for _ in range(4)]
        for w in workers:
            w.start()
        wait_until(lambda: len(results) > 50, 30, what="requests before the swap")
        publish.run(TrainerSettings())  # version 2 becomes champion
        assert holder.refresh()
        wait_until(lambda: any(v == "2" for _, v in results[-20:]), 30, what="version 2 served")
        stop.set()
        for w in workers:
            w.join(30)
    failures = [s for s, _ in results if s != 200]
    assert failures == [] and len(results) > 60
    seen = [v for _, v in results]
    assert seen[0] == "1" and seen[-1] == "2"


def test_b2_champion_with_missing_artifacts_keeps_the_previous_model(
    service_env, mlflow_server, tmp_path
):
    settings = ApiSettings()
    mlflow_client = registry.configure(settings)
    publish.run(TrainerSettings())
    holder = ModelHolder(rest(settings, tmp_path))
    holder.refresh()
    second = publish.run(TrainerSettings())
    # Delete the new version's artifacts from the server's artifact store (RELIABILITY.md B2).
    mv = mlflow_client.get_model_version(settings.model_name, second.version)
    artifacts = Path(mlflow_server.root / "artifacts")
    model_id = mv.model_id or mv.source.rsplit("/", 1)[-1]  # source is models:/m-<id>
    removed = [p for p in artifacts.rglob("MLmodel") if model_id in str(p)]
    assert removed, "the new version's MLmodel file was not found in the artifact store"
    for path in removed:
        shutil.rmtree(path.parent)
    for cached in tmp_path.glob("*.onnx"):  # the same seed compiles the same graph: a new pod
        cached.unlink()
    assert not holder.refresh()
    assert holder.current.champion.version == "1"
    assert holder.last_error and f"version {second.version}" in holder.last_error
    assert holder.load_failures == 1


def test_d2_registry_down_keeps_serving(fake):
    fake.promote("1")
    holder = ModelHolder(fake)
    holder.refresh()

    def down() -> Champion | None:
        raise ConnectionError("mlflow is down")

    fake.champion = down  # type: ignore[method-assign]
    assert not holder.refresh()
    assert holder.current is not None and "registry" in (holder.last_error or "")
    assert replace(holder.current.champion).version == "1"


def test_two_workers_serve_and_report_metrics_as_one_api(service_env):
    """The real entry point with IRIS_API_WORKERS=2: every scrape counts every worker's requests."""
    publish.run(TrainerSettings())
    with api_process(2) as url:
        wait_until(lambda: _ready(url), 90, 0.3, "the API to load the champion")
        n = 60
        with httpx.Client(timeout=10) as http:
            wait_until(lambda: all(_ready(url) for _ in range(6)), 60, 0.3, "both workers ready")
            before = _count_200(http, url)
            for _ in range(n):
                assert http.post(f"{url}/predict", json={"features": SETOSA}).status_code == 200
            # Fresh connections land on either worker; each must report the API's total.
            for _ in range(6):
                with httpx.Client(timeout=10) as fresh:
                    assert _count_200(fresh, url) == before + n


def test_b1_ready_means_every_worker_serves(service_env):
    """Two workers start before any champion exists; once `/readyz` says ready (what `irisctl up`
    waits for), every fresh connection, whichever worker takes it, gets a prediction."""
    with api_process(2) as url:
        wait_until(lambda: http_ok(f"{url}/healthz"), 90, 0.3, "the API to start")
        publish.run(TrainerSettings())  # the first champion appears while both workers run
        wait_until(lambda: _ready(url), 90, 0.1, "the API to report ready")
        for _ in range(20):
            with httpx.Client(timeout=10) as fresh:
                answer = fresh.post(f"{url}/predict", json={"features": SETOSA})
                assert answer.status_code == 200, answer.text


def test_served_probabilities_sum_to_one_and_match_sklearn(service_env, monkeypatch):
    """Through the real API process: every Iris row and the trainer's random verification
    points sum to 1 within 1e-9 and are within 1e-6 of the registered model's predict_proba
    (the float32 graph alone answered 0.999999 where scikit-learn says 1.0)."""
    import mlflow.sklearn

    # The test's own freshly trained model, loaded here only as the reference; irisctl itself
    # never unpickles a registered model (README, Security).
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")

    summary = publish.run(TrainerSettings())
    every_row = np.vstack([pipeline.load_dataset(0).x_train, pipeline.load_dataset(0).x_test])
    probes = onnx_export.probe_rows(every_row, seed=0)
    model = mlflow.sklearn.load_model(f"models:/{service_env['IRIS_MODEL_NAME']}/{summary.version}")
    expected = model.predict_proba(probes)
    with api_process(1) as url:
        wait_until(lambda: _ready(url), 90, 0.3, "the API to load the champion")
        resp = httpx.post(f"{url}/predict", json={"instances": probes.tolist()}, timeout=30)
    assert resp.status_code == 200, resp.text
    answered = np.array(
        [[p["probabilities"][c] for c in CLASSES] for p in resp.json()["predictions"]]
    )
    assert answered.shape == expected.shape
    assert np.abs(answered.sum(axis=1) - 1).max() <= 1e-9
    assert np.abs(answered - expected).max() <= 1e-6
    assert ((answered >= 0) & (answered <= 1)).all()


@contextmanager
def api_process(workers: int = 2, **env: str) -> Iterator[str]:
    """The real entry point (`python -m iris_services.api`) on a free port, in its own process
    group, stopped group-wide on exit; yields its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "iris_services.api"],
        env={
            **os.environ,
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "IRIS_API_WORKERS": str(workers),
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_group(proc, grace_s=30)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _count_200(http: httpx.Client, url: str) -> float:
    for line in http.get(f"{url}/metrics").text.splitlines():
        if line.startswith('iris_api_requests_total{status="200"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_first_load_waits_for_a_registry_that_is_still_starting(fake):
    """A worker must not start serving 503s just because MLflow was not up yet."""
    fake.promote("1")
    real = fake.champion
    calls = {"n": 0}

    def starting() -> Champion | None:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError("connection refused")
        return real()

    fake.champion = starting  # type: ignore[method-assign]
    holder = ModelHolder(fake)
    holder.first_load(10, threading.Event())
    assert calls["n"] == 3 and holder.current is not None


def test_first_load_gives_up_at_its_deadline(fake):
    def down() -> Champion | None:
        raise ConnectionError("connection refused")

    fake.champion = down  # type: ignore[method-assign]
    holder = ModelHolder(fake)
    started = time.monotonic()
    holder.first_load(1.0, threading.Event())
    assert holder.current is None and time.monotonic() - started < 3


def test_g4_unexpected_methods_are_rejected(client, fake):
    fake.promote("1")
    refresh(client)
    assert client.delete("/predict").status_code == 405
    assert client.put("/model", json={}).status_code == 405
    assert client.get("/predict").status_code == 405
    assert client.post("/healthz").status_code == 405


def _rss_mib() -> float:
    status = Path("/proc/self/status").read_text()
    return next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmRSS:")) / 1024


def test_a6_huge_and_lying_bodies_over_real_http(fake):
    """Real HTTP (uvicorn in this process): 100 MB streamed without a Content-Length, and
    Content-Length headers that lie in both directions."""
    import socket

    fake.promote("1")
    holder = ModelHolder(fake)
    holder.refresh()
    app = create_app(ApiSettings(), holder, poll=False)  # the default 1 MiB limit
    with LiveServer(app) as url:
        before = _rss_mib()

        def hundred_mb():
            yield b'{"features": ['
            for _ in range(100):
                yield b"1.0, " * 200_000  # 1 MB
            yield b"1.0]}"

        t0 = time.monotonic()
        with httpx.Client(timeout=30) as http:
            try:
                status = http.post(f"{url}/predict", content=hundred_mb()).status_code
            except httpx.HTTPError:  # the server answered 413 and closed mid-upload
                status = 413
            assert status == 413
            assert time.monotonic() - t0 < 10
            assert _rss_mib() - before < 50
            assert http.post(f"{url}/predict", json={"features": SETOSA}).status_code == 200

        host, port = url.removeprefix("http://").split(":")

        def raw(request: bytes) -> bytes:
            with socket.create_connection((host, int(port)), timeout=10) as s:
                s.sendall(request)
                return s.recv(4096)

        # Claims 100 MB, sends a few bytes: refused on the header, before any body is read.
        claimed = raw(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000000\r\n\r\n{}"
        )
        assert claimed.startswith(b"HTTP/1.1 413")
        # Claims fewer bytes than it sends: only the declared bytes are read, and they are not
        # a valid body.
        short = raw(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 10\r\nConnection: close\r\n\r\n{"features": [5.1, 3.5, 1.4, 0.2]}'
        )
        assert short.startswith(b"HTTP/1.1 422")


# -- the REST load path: no mlflow, no scikit-learn, one download for every worker --------------


def test_workers_share_one_download_and_a_corrupt_cache_is_fetched_again(service_env, tmp_path):
    settings = ApiSettings()
    summary = publish.run(TrainerSettings())
    first, second = rest(settings, tmp_path), rest(settings, tmp_path)
    champion = first.champion()
    assert champion is not None and champion.version == "1"
    assert champion.accuracy == pytest.approx(summary.accuracy, abs=1e-6)
    assert champion.source.startswith("models:/m-")
    a, b = first.load(champion), second.load(champion)
    assert a.sha256 == b.sha256 and first.downloads + second.downloads == 1
    cached = tmp_path / f"{a.sha256}.onnx"
    assert cached.read_bytes()[:4] and sorted(p.name for p in tmp_path.glob("*.onnx")) == [
        cached.name
    ]
    cached.write_bytes(b"not a graph")  # a torn or tampered file is never served
    assert second.load(champion).sha256 == a.sha256 and second.downloads == 1


def test_no_registered_model_is_no_champion(service_env, tmp_path):
    assert rest(ApiSettings(), tmp_path).champion() is None


def test_b2_a_graph_that_does_not_match_its_digest_keeps_the_previous_model(service_env, tmp_path):
    settings = ApiSettings()
    mlflow_client = registry.configure(settings)
    publish.run(TrainerSettings())
    holder = ModelHolder(rest(settings, tmp_path))
    assert holder.refresh(), holder.last_error
    second = publish.run(TrainerSettings())
    mv = mlflow_client.get_model_version(settings.model_name, second.version)
    model_id = mv.source.removeprefix("models:/")
    mlflow_client.set_logged_model_tags(model_id, {DIGEST_TAG: "0" * 64})
    assert not holder.refresh()
    assert holder.current is not None and holder.current.champion.version == "1"
    # The digest tag is signed with the version: a changed one fails the signature first.
    assert "signature does not match" in (holder.last_error or "") and holder.load_failures == 1


def test_a_worker_imports_neither_mlflow_nor_sklearn(service_env):
    """A real worker (the entry point's app factory, its lifespan loading the champion over
    REST), after a prediction: neither mlflow nor scikit-learn is in its sys.modules."""
    import json
    import subprocess
    import sys

    publish.run(TrainerSettings())
    probe = (
        "import json, sys\n"
        "from fastapi.testclient import TestClient\n"
        "from iris_services.api.__main__ import build_app\n"
        "with TestClient(build_app()) as c:\n"
        "    r = c.post('/predict', json={'features': [5.1, 3.5, 1.4, 0.2]})\n"
        "    assert r.status_code == 200, r.text\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    modules = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "onnxruntime" in modules and "iris_services.api.graph" in modules
    heavy = {m for m in modules if m.split(".")[0] in {"mlflow", "sklearn", "scipy", "pandas"}}
    assert heavy == set()


def test_the_index_and_the_runbooks_are_pages_a_person_reads(client, fake):
    assert "no model yet" in client.get("/").text
    fake.promote("3")
    refresh(client)
    index = client.get("/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert "version 3" in index.text
    for link in ("/docs", "/model", "/metrics", "/openapi.json", "/runbooks"):
        assert f'href="{link}"' in index.text
        assert client.get(link).status_code == 200, link
    runbooks = client.get("/runbooks").text
    for alert in ("IrisModelStale", "IrisModelAccuracyLow", "IrisModelApiDown"):
        assert f'<a id="runbook-{alert.lower()}"></a>' in runbooks and f"<b>{alert}</b>" in runbooks


def test_docs_load_no_asset_from_another_host(client):
    """Offline (a plane, an air-gapped cluster): every script and style /docs and /redoc load
    is served by the API itself."""
    import re

    for page in ("/docs", "/redoc"):
        text = client.get(page).text
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", text) + re.findall(
            r"""url: ['"]([^'"]+)['"]""", text
        )
        assert assets, page
        for asset in assets:
            assert asset.startswith("/"), f"{page} loads {asset} from another host"
            resp = client.get(asset)
            assert resp.status_code == 200 and len(resp.content) > 100, asset


def test_a6_urllib_reads_the_413_of_an_oversize_body(fake):
    """Python's urllib sends the whole body before it reads: the server must read the rest of
    an oversize body before closing, or urllib gets "connection reset" instead of the 413."""
    import urllib.error
    import urllib.request

    fake.promote("1")
    holder = ModelHolder(fake)
    holder.refresh()
    app = create_app(ApiSettings(), holder, poll=False)  # the default 1 MiB limit
    body = b'{"features": [' + b"1.0, " * (1_000_000) + b"1.0]}"  # ~5 MiB
    with LiveServer(app) as url:
        for _ in range(8):
            request = urllib.request.Request(
                f"{url}/predict", data=body, headers={"Content-Type": "application/json"}
            )
            with pytest.raises(urllib.error.HTTPError) as answered:
                urllib.request.urlopen(request, timeout=10)
            assert answered.value.code == 413
            assert b"larger than" in answered.value.read()


def test_runbooks_render_whatever_the_locale(client):
    """A container's C locale decodes files as ASCII unless told: runbooks.md has an em dash."""
    import subprocess
    import sys

    code = "from iris_services.api import pages; print(len(pages.runbooks_html()))"
    proc = subprocess.run(
        [sys.executable, "-X", "utf8=0", "-c", code],
        env={"LC_ALL": "C", "LANG": "C", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
