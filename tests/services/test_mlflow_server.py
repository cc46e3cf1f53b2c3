"""MLflow serves only tracking, the registry, artifacts and the UI (issue 25, item 3).

MLflow 3.17 mounts its AI Gateway and its Assistant (whose API runs a Bash tool on the host for
loopback clients once a provider is found: mlflow/server/assistant/api.py).
``python -m iris_services.mlflow_server`` — what every target runs — answers 404 there.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from iris_services.mlflow_server import blocked
from tests.conftest import MlflowServer, free_port

GATEWAY_AND_ASSISTANT = [
    ("GET", "/ajax-api/3.0/mlflow/assistant/providers"),
    ("GET", "/ajax-api/3.0/mlflow/assistant/config"),
    ("POST", "/ajax-api/3.0/mlflow/assistant/message"),
    ("GET", "/gateway/mlflow/v1/models"),
    ("POST", "/ajax-api/2.0/mlflow/gateway-proxy"),
    ("GET", "/ajax-api/3.0/mlflow/gateway/supported-providers"),
    ("GET", "/api/3.0/mlflow/gateway/endpoints/list"),
    # spellings that reach the same routes
    ("GET", "//ajax-api/3.0/mlflow/assistant/config"),
    ("GET", "/ajax-api/3.0/mlflow/./assistant/config"),
]
KEPT = [
    "/health",
    "/",
    "/api/2.0/mlflow/experiments/search?max_results=1",
    "/api/2.0/mlflow/registered-models/search",
    "/ajax-api/3.0/mlflow/server-info",
    "/api/2.0/mlflow-artifacts/artifacts",
]


def status(url: str, method: str = "GET") -> int:
    data = b"{}" if method == "POST" else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_gateway_and_assistant_routes_answer_404_on_the_real_server(
    mlflow_server: MlflowServer,
) -> None:
    answers = {path: status(mlflow_server.url + path, m) for m, path in GATEWAY_AND_ASSISTANT}
    assert answers == {path: 404 for _, path in GATEWAY_AND_ASSISTANT}
    kept = {path: status(mlflow_server.url + path) for path in KEPT}
    assert kept == {path: 200 for path in KEPT}
    # and the gateway is off, so the UI offers none of it
    with urllib.request.urlopen(mlflow_server.url + "/ajax-api/3.0/mlflow/server-info") as r:
        assert b'"gateway":false' in r.read().replace(b" ", b"")


@pytest.mark.e2e
def test_plain_mlflow_server_answers_the_assistant(tmp_path: Path) -> None:
    """What the wrapper removes: plain ``mlflow server`` serves the assistant's API."""
    server = MlflowServer(tmp_path, free_port(), module=("mlflow", "server"))
    server.start()
    try:
        assert status(server.url + "/ajax-api/3.0/mlflow/assistant/providers") == 200
        assert status(server.url + "/ajax-api/3.0/mlflow/assistant/config") == 200
    finally:
        server.stop()


def test_blocked_paths_with_a_static_prefix_or_root_path() -> None:
    assert blocked("/mlflow/ajax-api/3.0/mlflow/assistant/config", ("/mlflow",))
    assert blocked("/gateway", ())
    assert not blocked("/gatewayish", ())
    assert not blocked("/api/2.0/mlflow-artifacts/artifacts/1/gateway/x", ())
    assert not blocked("/mlflow/api/2.0/mlflow/runs/get", ("/mlflow",))
