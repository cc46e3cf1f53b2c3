"""Registry trust: a version someone else put into MLflow never runs code, serves or promotes.

MLflow has no authentication here, so anyone who reaches it can register a version, move the
alias and write tags. The attacker below has that access but not the stack's signing key: they
register a version whose scikit-learn flavor is a pickle that creates a marker file when loaded
(``mlflow.sklearn`` unpickles the format the model's own ``MLmodel`` file names), beside a copy
of a real version's ONNX graph and digest tag, so every check that looks only at the graph
passes. Training, ``promote``, ``rollback`` and the API must neither run it nor trust it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import mlflow
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from iris_services.api.app import create_app
from iris_services.api.mlflow_rest import RestRegistry
from iris_services.api.model_holder import ModelHolder
from iris_services.common import signing
from iris_services.common.names import DIGEST_TAG, GRAPH_FILE
from iris_services.common.settings import ApiSettings, TrainerSettings
from iris_services.train import champion, pipeline, publish


class Payload:
    """Unpickling this calls ``open(marker, "w")``: the file appears only if code ran on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def register_crafted_version(client: MlflowClient, name: str, source_version: str, marker: Path):
    """What an attacker with MLflow access registers: a pickle-format model that writes
    ``marker`` when loaded, beside a copy of a real version's graph and digest tag."""
    exp = mlflow.set_experiment(f"{name}-attacker")
    mv = client.get_model_version(name, source_version)
    source = client.get_logged_model(mv.source.removeprefix("models:/"))
    digest = source.tags[DIGEST_TAG]
    tmp = marker.parent / "attacker"
    mlflow.artifacts.download_artifacts(
        f"{source.artifact_location}/{GRAPH_FILE}", dst_path=str(tmp)
    )
    with mlflow.start_run(experiment_id=exp.experiment_id) as run:
        # pip_requirements given: MLflow would otherwise load the model to infer them.
        info = mlflow.sklearn.log_model(
            Payload(marker), name="model", serialization_format="pickle", pip_requirements=[]
        )
        client.log_model_artifact(info.model_id, str(tmp / GRAPH_FILE))
        client.set_logged_model_tags(info.model_id, {DIGEST_TAG: digest})
    assert not marker.exists()  # logging it ran nothing
    crafted = client.create_model_version(
        name, info.model_uri, run_id=run.info.run_id, model_id=info.model_id
    )
    return str(crafted.version), digest


@pytest.fixture
def attacked(service_env, mlflow_server, tmp_path, monkeypatch):
    """v1 trained (and signed) by us, then v2 registered by someone else without the key."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    name = service_env["IRIS_MODEL_NAME"]
    assert publish.run(TrainerSettings()).version == "1"
    marker = tmp_path / "pwned"
    version, digest = register_crafted_version(client, name, "1", marker)
    return client, name, version, digest, marker


def champion_version(client: MlflowClient, name: str) -> str:
    return client.get_model_version_by_alias(name, "champion").version


def test_training_scores_a_crafted_champion_zero_without_unpickling_it(attacked):
    client, name, version, _, marker = attacked
    client.set_registered_model_alias(name, "champion", version)  # the attacker moves the alias
    summary = publish.run(TrainerSettings())
    assert not marker.exists()
    # Not ours: scored 0, so the new (signed) model replaces it.
    assert summary.scored_champion_accuracy == 0.0 and summary.promoted
    assert champion_version(client, name) == summary.version


def test_promote_refuses_an_unsigned_or_mis_signed_version_even_forced(attacked):
    client, name, version, digest, marker = attacked
    data = pipeline.load_dataset()
    with pytest.raises(champion.Refused, match=f"version {version} is not signed"):
        champion.promote(
            client, name, "champion", version, data, 0.0, "manual", signing_key(), force=True
        )
    # Signed with some other key (a stack the attacker controls): refused too.
    forged = signing.sign_version(bytes(32), name, version, digest)
    client.set_model_version_tag(name, version, signing.SIGNATURE_TAG, forged)
    with pytest.raises(champion.Refused, match="signature does not match"):
        champion.promote(
            client, name, "champion", version, data, 0.0, "manual", signing_key(), force=True
        )
    # Our own v1's signature copied onto v2: bound to v1's number, so refused.
    v1 = client.get_model_version(name, "1").tags[signing.SIGNATURE_TAG]
    client.set_model_version_tag(name, version, signing.SIGNATURE_TAG, v1)
    with pytest.raises(champion.Refused, match="signature does not match"):
        champion.promote(
            client, name, "champion", version, data, 0.0, "manual", signing_key(), force=True
        )
    assert champion_version(client, name) == "1" and not marker.exists()


def signing_key() -> bytes:
    return signing.read_key_file(os.environ[signing.KEY_FILE_ENV])


def forge_move(client: MlflowClient, name: str, record: dict, at: float) -> None:
    tag = f"{champion.MOVE_TAG_PREFIX}{int(at * 1000)}"
    client.set_registered_model_tag(name, tag, json.dumps(record))


def test_forged_alias_moves_do_not_steer_rollback(attacked):
    client, name, version, _, marker = attacked
    data = pipeline.load_dataset()
    at = time.time() + 60
    # Unsigned: "v1 was promoted away from the crafted version".
    forge_move(
        client,
        name,
        {"at": at, "alias": "champion", "from": version, "to": "1"} | {"reason": "gate", "by": "x"},
        at,
    )
    # Our own signed record of v1's promotion, its "from" edited: the signature no longer fits.
    tags = client.get_registered_model(name).tags
    ours = json.loads(
        next(
            v
            for k, v in tags.items()
            if k.startswith(champion.MOVE_TAG_PREFIX) and "sig" in json.loads(v)
        )
    )
    forge_move(client, name, ours | {"from": version, "at": at + 1}, at + 1)
    with pytest.raises(champion.Refused, match="no previous champion"):
        champion.rollback(client, name, "champion", data, 0.9, signing_key())
    assert champion_version(client, name) == "1" and not marker.exists()
    # Rollback's own reading of the history keeps only the move our trainer signed.
    signed = champion.history(client, name, "champion", signing_key())
    assert [(m.from_version, m.to_version) for m in signed] == [(None, "1")]


def test_the_api_refuses_a_version_not_signed_by_our_trainer_and_keeps_serving(attacked, tmp_path):
    client, name, version, _, marker = attacked
    settings = ApiSettings()
    key_file = os.environ[signing.KEY_FILE_ENV]
    rest = RestRegistry(
        settings.tracking_uri, name, "champion", tmp_path / "cache", key_file=key_file
    )
    holder = ModelHolder(rest)
    assert holder.refresh() and holder.current.champion.version == "1"
    api = TestClient(create_app(settings, holder, poll=False))
    client.set_registered_model_alias(name, "champion", version)  # the attacker moves the alias
    assert not holder.refresh()
    model = api.get("/model").json()
    assert model["version"] == "1" and model["load_failures"] == 1
    assert f"version {version} is not signed" in model["last_load_error"]
    assert "iris_api_model_load_failures_total 1.0" in api.get("/metrics").text
    assert (
        api.post("/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}).json()["model"]["version"]
        == "1"
    )
    # An API without the key trusts nothing.
    keyless = ModelHolder(RestRegistry(settings.tracking_uri, name, "champion", tmp_path / "c2"))
    client.set_registered_model_alias(name, "champion", "1")
    assert not keyless.refresh() and "no signing key" in str(keyless.last_error)
    assert not marker.exists()
