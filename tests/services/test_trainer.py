"""The trainer against a real MLflow tracking server (sqlite backend, proxied artifacts)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from iris_services.common.settings import TrainerSettings
from iris_services.train import __main__ as trainer_main
from iris_services.train import publish


def versions(client: MlflowClient, name: str) -> list[str]:
    return sorted(mv.version for mv in client.search_model_versions(f"name='{name}'"))


def test_run_is_logged_registered_and_becomes_champion(service_env, mlflow_server):
    summary = publish.run(TrainerSettings())
    client = MlflowClient(mlflow_server.url)
    name = service_env["IRIS_MODEL_NAME"]
    assert summary.promoted and summary.version == "1" and summary.champion_version == "1"
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    run = client.get_run(summary.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["accuracy"] == pytest.approx(summary.accuracy)
    assert {"n_estimators", "max_depth", "seed", "test_size"} <= set(run.data.params)
    assert run.data.params["test_rows"] == "30"
    assert {"precision_setosa", "recall_virginica"} <= set(run.data.metrics)
    assert run.data.tags["gate"] == "promoted"
    artifacts = {a.path for a in client.list_artifacts(summary.run_id)}
    assert {"confusion_matrix.png", "accuracy_over_time.png"} <= artifacts
    mv = client.get_model_version(name, "1")
    assert float(mv.tags["accuracy"]) == pytest.approx(summary.accuracy, abs=1e-6)


def test_impossible_threshold_promotes_nothing(service_env, mlflow_server, monkeypatch):
    monkeypatch.setenv("IRIS_ACCURACY_THRESHOLD", "1.0")
    monkeypatch.setenv("IRIS_SEED", "1")  # seed 1 scores 0.967
    client = MlflowClient(mlflow_server.url)
    summary = publish.run(TrainerSettings())
    assert not summary.promoted and "below the threshold" in summary.reason
    assert versions(client, service_env["IRIS_MODEL_NAME"]) == []
    assert client.get_run(summary.run_id).data.tags["gate"] == "rejected"
    assert client.get_run(summary.run_id).info.status == "FINISHED"


def test_worse_than_champion_is_not_promoted(service_env, mlflow_server, monkeypatch):
    client = MlflowClient(mlflow_server.url)
    name = service_env["IRIS_MODEL_NAME"]
    publish.run(TrainerSettings())
    # Pretend the champion is perfect: a new run can at best tie it.
    client.set_model_version_tag(name, "1", "accuracy", "1.01")
    summary = publish.run(TrainerSettings())
    assert not summary.promoted and "worse than champion" in summary.reason
    assert versions(client, name) == ["1"]


def test_mlflow_dying_mid_run_exits_nonzero_and_leaves_no_version(
    own_mlflow_server, monkeypatch, capsys
):
    """The server is killed (its whole process group) after the model is logged."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", own_mlflow_server.url)
    monkeypatch.setenv("IRIS_WAIT_FOR_MLFLOW_SECONDS", "5")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    monkeypatch.setenv("IRIS_SEED", "4")
    real_checkpoint = publish.checkpoint

    def crash_after_logging(stage: str) -> None:
        real_checkpoint(stage)
        if stage == "model_verified":
            own_mlflow_server.stop()

    monkeypatch.setattr(publish, "checkpoint", crash_after_logging)
    assert trainer_main.main() == trainer_main.EXIT_FAILED
    assert '"event": "training.failed"' in capsys.readouterr().out

    monkeypatch.setattr(publish, "checkpoint", real_checkpoint)
    own_mlflow_server.start()
    client = MlflowClient(own_mlflow_server.url)
    assert versions(client, "iris-classifier") == []
    # The run the crash left RUNNING is marked FAILED by the next training.
    exp = client.get_experiment_by_name("iris_classification")
    orphans = client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
    assert len(orphans) == 1
    monkeypatch.setenv("IRIS_ORPHAN_RUN_SECONDS", "0")
    summary = publish.run(TrainerSettings())
    assert client.get_run(orphans[0].info.run_id).info.status == "FAILED"
    assert summary.promoted and versions(client, "iris-classifier") == ["1"]


def test_unreachable_mlflow_fails_fast(monkeypatch, capsys):
    from tests.conftest import free_port

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("IRIS_WAIT_FOR_MLFLOW_SECONDS", "2")
    assert trainer_main.main() == trainer_main.EXIT_FAILED
    assert "did not answer within 2s" in capsys.readouterr().out


def test_second_trainer_is_refused_while_the_lock_is_held(tmp_path):
    import fcntl

    lock = tmp_path / "train.lock"
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "iris_services.train"],
            env={
                **os.environ,
                "IRIS_TRAIN_LOCK": str(lock),
                "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.close(fd)
    assert proc.returncode == trainer_main.EXIT_BUSY
    assert "already running" in proc.stdout
