"""The trainer against a real MLflow tracking server (sqlite backend, proxied artifacts)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from iris_services.common import signing
from iris_services.common.feedback_ids import Ids, derive_key
from iris_services.common.feedback_store import FeedbackStore, Label, encode
from iris_services.common.names import DIGEST_TAG
from iris_services.common.settings import TrainerSettings
from iris_services.train import __main__ as trainer_main
from iris_services.train import champion, pipeline, publish


def versions(client: MlflowClient, name: str) -> list[str]:
    return sorted(mv.version for mv in client.search_model_versions(f"name='{name}'"))


def test_run_is_logged_registered_and_becomes_champion(service_env, mlflow_server):
    summary = publish.run(TrainerSettings())
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
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


def test_c1_impossible_threshold_promotes_nothing(service_env, mlflow_server, monkeypatch):
    monkeypatch.setenv("IRIS_ACCURACY_THRESHOLD", "1.0")
    monkeypatch.setenv("IRIS_SEED", "1")  # seed 1 scores 0.933
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    summary = publish.run(TrainerSettings())
    assert not summary.promoted and "below the threshold" in summary.reason
    assert versions(client, service_env["IRIS_MODEL_NAME"]) == []
    assert client.get_run(summary.run_id).data.tags["gate"] == "rejected"
    assert client.get_run(summary.run_id).info.status == "FINISHED"


def _shuffled_labels_train(seed, test_size=0.2, split_seed=0, production=()):
    """A deliberately bad model: the real pipeline's split, trained on shuffled labels."""
    from sklearn.ensemble import RandomForestClassifier

    data = pipeline.load_dataset(split_seed, test_size, production)
    y = np.random.default_rng(seed).permutation(data.y_train)
    model = RandomForestClassifier(n_estimators=25, random_state=seed).fit(data.x_train, y)
    return pipeline.TrainResult(model, {"n_estimators": 25}, pipeline.evaluate(model, data), data)


def test_c1_worse_than_champion_on_the_same_rows_is_not_promoted_and_the_champion_revalidated(
    service_env, mlflow_server, monkeypatch
):
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    name = service_env["IRIS_MODEL_NAME"]
    first = publish.run(TrainerSettings())
    registered_at = client.get_model_version(name, "1").creation_timestamp / 1000
    # With no threshold to stop it, only the comparison on the same rows keeps it out.
    monkeypatch.setenv("IRIS_ACCURACY_THRESHOLD", "0")
    monkeypatch.setattr(pipeline, "train", _shuffled_labels_train)
    summary = publish.run(TrainerSettings())
    assert not summary.promoted and "worse than champion v1" in summary.reason
    assert versions(client, name) == ["1"]
    run = client.get_run(summary.run_id)
    # The champion re-scored on this run's rows: the score it had when it was promoted.
    assert run.data.metrics["champion_accuracy"] == pytest.approx(first.accuracy)
    assert run.data.tags["champion.validated"] == "true" and summary.champion_validated
    first_params = client.get_run(first.run_id).data.params
    for key in ("data_digest", "split_seed", "test_rows"):
        assert run.data.params[key] == first_params[key]
    mv = client.get_model_version(name, "1")
    assert float(mv.tags["validated_at"]) > registered_at
    assert float(mv.tags["scored_accuracy"]) == pytest.approx(first.accuracy)


def test_a_champion_below_the_threshold_is_scored_but_not_revalidated(
    service_env, mlflow_server, monkeypatch
):
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    name = service_env["IRIS_MODEL_NAME"]
    publish.run(TrainerSettings())
    validated = client.get_model_version(name, "1").tags["validated_at"]
    monkeypatch.setenv("IRIS_ACCURACY_THRESHOLD", "1.0")
    monkeypatch.setenv("IRIS_SEED", "1")  # scores 0.933 < 1.0 on the fixed rows
    summary = publish.run(TrainerSettings())
    assert not summary.promoted and summary.champion_validated is False
    mv = client.get_model_version(name, "1")
    assert mv.tags["validated_at"] == validated
    assert float(mv.tags["scored_accuracy"]) == pytest.approx(summary.scored_champion_accuracy)
    assert client.get_run(summary.run_id).data.tags["champion.validated"] == "false"


def test_run_logs_the_data_as_a_dataset_input_and_sets_the_experiment_kind(
    service_env, mlflow_server
):
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    summary = publish.run(TrainerSettings())
    run = client.get_run(summary.run_id)
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1
    ds = inputs[0].dataset
    digest = pipeline.load_dataset().digest
    assert ds.digest == digest == run.data.params["data_digest"] and ds.name == f"iris@{digest}"
    assert "archive.ics.uci.edu" in ds.source and "species" in ds.schema
    assert {t.key: t.value for t in inputs[0].tags}["mlflow.data.context"] == "training"
    exp = client.get_experiment_by_name(service_env["IRIS_EXPERIMENT"])
    # The value MLflow 3's UI knows as "Machine learning" (mlflow/server/js ExperimentKind).
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


def test_training_uses_every_labelled_production_row_once(service_env, mlflow_server, signing_key):
    """Batches in the feedback store (as the API writes them): each id's first label is a row,
    a later label of the same id and an id another stack signed are not; the rows join both
    sides of the split by their ids' hash, and the run logs the counts and a new digest."""
    ids = Ids(derive_key(signing_key))
    rng = np.random.default_rng(1)
    values = rng.uniform(4.0, 7.0, size=(60, 4))
    made = ids.many("1", values, np.zeros(60, dtype=int))
    foreign = Ids(derive_key(b"j" * 32)).one("1", [5.0, 3.0, 1.5, 0.2], 0)
    store = FeedbackStore(mlflow_server.url, service_env["IRIS_MODEL_NAME"])
    first = [Label(i, "virginica", 100.0) for i in made] + [Label(foreign, "setosa", 100.0)]
    store.put("2026-12-01/0000000000100-a.jsonl", encode(first))
    store.put("2026-12-02/0000000000200-b.jsonl", encode([Label(made[0], "setosa", 200.0)]))

    summary = publish.run(TrainerSettings())
    run = MlflowClient(mlflow_server.url, mlflow_server.url).get_run(summary.run_id)
    params = run.data.params
    tested = sum(pipeline.held_out(i, 0.2) for i in made)
    assert 0 < tested < 60  # both sides got rows
    assert (params["iris_rows"], params["production_rows"]) == ("150", "60")
    assert params["production_test_rows"] == str(tested)
    assert params["test_rows"] == str(30 + tested)
    assert params["train_rows"] == str(120 + 60 - tested)
    assert params["data_digest"] != pipeline.load_dataset().digest
    [given] = run.inputs.dataset_inputs
    tags = {t.key: t.value for t in given.tags}
    assert (tags["iris_rows"], tags["production_rows"]) == ("150", "60")
    assert given.dataset.name == f"iris+production@{params['data_digest']}"
    # Each row as labelled first: every one virginica (the later "setosa" of one is not used).
    rows = publish.production_rows(TrainerSettings(), signing_key)
    assert sorted(r.id for r in rows) == sorted(made)
    assert {r.label for r in rows} == {2}
    assert [list(r.values) for r in sorted(rows, key=lambda r: made.index(r.id))] == (
        values.tolist()
    )


def test_promote_rollback_and_history_of_the_alias(
    service_env, mlflow_server, monkeypatch, signing_key
):
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    name = service_env["IRIS_MODEL_NAME"]
    data = pipeline.load_dataset()
    publish.run(TrainerSettings())
    monkeypatch.setenv("IRIS_SEED", "1")
    assert publish.run(TrainerSettings()).version == "2"  # 0.933 vs 0.933: a tie, the newer wins
    move, _ = champion.rollback(client, name, "champion", data, 0.9, signing_key)
    assert (move.from_version, move.to_version, move.reason) == ("2", "1", "rollback")
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    with pytest.raises(champion.Refused, match="no previous champion"):
        champion.rollback(client, name, "champion", data, 0.9, signing_key)
    with pytest.raises(champion.Refused, match="no version '9'") as unknown:
        champion.promote(client, name, "champion", "9", data, 0.9, "manual", signing_key)
    assert unknown.value.bad_input
    with pytest.raises(champion.Refused, match="below the threshold"):
        champion.promote(client, name, "champion", "2", data, 1.0, "manual", signing_key)
    # A registered version whose artifact is not a model fails the smoke check.
    run_id = client.create_run(client.get_experiment_by_name(name).experiment_id).info.run_id
    bad = client.create_model_version(name, f"runs:/{run_id}/nothing", run_id=run_id)
    with pytest.raises(champion.Refused, match="smoke check"):
        champion.promote(
            client, name, "champion", str(bad.version), data, 0.0, "manual", signing_key, True
        )
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    champion.promote(client, name, "champion", "2", data, 1.0, "manual", signing_key, force=True)
    moves = champion.history(client, name, "champion")
    assert [(m.from_version, m.to_version, m.reason) for m in moves] == [
        (None, "1", "gate"),
        ("1", "2", "gate"),
        ("2", "1", "rollback"),
        ("1", "2", "manual"),
    ]
    periods = champion.periods(moves)
    assert [(p.version, p.reason, p.ended_by) for p in periods] == [
        ("1", "gate", "gate"),
        ("2", "gate", "rollback"),
        ("1", "rollback", "manual"),
        ("2", "manual", None),
    ]
    assert all(p.end == q.start for p, q in itertools.pairwise(periods))


def test_c3_mlflow_dying_mid_run_exits_nonzero_and_leaves_no_version(
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
    client = MlflowClient(own_mlflow_server.url, own_mlflow_server.url)
    assert versions(client, "iris-classifier") == []
    # The run the crash left RUNNING is marked FAILED by the next training.
    exp = client.get_experiment_by_name("iris_classification")
    orphans = client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
    assert len(orphans) == 1
    monkeypatch.setenv("IRIS_ORPHAN_RUN_SECONDS", "0")
    summary = publish.run(TrainerSettings())
    assert client.get_run(orphans[0].info.run_id).info.status == "FAILED"
    assert summary.promoted and versions(client, "iris-classifier") == ["1"]


def test_c2_unreachable_mlflow_fails_fast(monkeypatch, capsys):
    from tests.conftest import free_port

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("IRIS_WAIT_FOR_MLFLOW_SECONDS", "2")
    assert trainer_main.main() == trainer_main.EXIT_FAILED
    assert "did not answer within 2s" in capsys.readouterr().out


def test_c6_second_trainer_is_refused_while_the_lock_is_held(tmp_path):
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


def test_c4_a_crash_between_register_and_alias_never_serves_the_new_version(
    service_env, mlflow_server, tmp_path
):
    """The trainer process dies (os._exit, like SIGKILL) right after registering version 2."""
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    name = service_env["IRIS_MODEL_NAME"]
    assert publish.run(TrainerSettings()).version == "1"
    crash = (
        "import os\n"
        "from iris_services.train import __main__ as m, publish\n"
        "real = publish.checkpoint\n"
        "publish.checkpoint = lambda s: os._exit(137) if s == 'registered' else real(s)\n"
        "raise SystemExit(m.main())\n"
    )
    proc = subprocess.run([sys.executable, "-c", crash], capture_output=True, timeout=300)
    assert proc.returncode == 137
    assert versions(client, name) == ["1", "2"]  # registered, never validated as champion
    # The API follows the alias, not the latest version: it still resolves to version 1.
    from iris_services.api.mlflow_rest import RestRegistry
    from iris_services.common.settings import ApiSettings

    api_settings = ApiSettings()
    api_registry = RestRegistry(
        api_settings.tracking_uri,
        name,
        api_settings.model_alias,
        tmp_path,
        key_file=os.environ[signing.KEY_FILE_ENV],
    )
    champion = api_registry.champion()
    assert champion is not None and champion.version == "1"
    # `irisctl status` reads the same over REST and notes the stray version.
    from irisctl.clients.mlflow import MlflowRest

    rest = MlflowRest(mlflow_server.url)
    assert rest.latest_version(name) == "2" and rest.champion(name, "champion").version == "1"
    # The next successful run moves the alias.
    summary = publish.run(TrainerSettings())
    assert summary.promoted and client.get_model_version_by_alias(name, "champion").version == "3"


def _failing_artifact_store(own_mlflow_server, monkeypatch, capsys) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", own_mlflow_server.url)
    monkeypatch.setenv("IRIS_SEED", "4")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    assert trainer_main.main() == trainer_main.EXIT_FAILED
    assert '"event": "training.failed"' in capsys.readouterr().out
    client = MlflowClient(own_mlflow_server.url, own_mlflow_server.url)
    assert versions(client, "iris-classifier") == []
    exp = client.get_experiment_by_name("iris_classification")
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    return client


def test_c5_artifact_store_down_fails_the_run_and_registers_nothing(
    own_mlflow_server, monkeypatch, capsys
):
    """The server's artifact destination becomes unusable (a file where its directory was)."""
    artifacts = own_mlflow_server.root / "artifacts"
    if artifacts.exists():
        import shutil

        shutil.rmtree(artifacts)
    artifacts.write_text("not a directory")
    _failing_artifact_store(own_mlflow_server, monkeypatch, capsys)
    artifacts.unlink()
    assert trainer_main.main() == 0  # the store is back: the next run succeeds
    client = MlflowClient(own_mlflow_server.url, own_mlflow_server.url)
    assert client.get_model_version_by_alias("iris-classifier", "champion").version == "1"


@pytest.fixture
def mlflow_on_a_small_disk(tmp_path):
    """A real MLflow server whose artifact store is a 20 MiB tmpfs (needs root to mount)."""
    from tests.conftest import MlflowServer, free_port

    disk = tmp_path / "artifacts"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    server = MlflowServer(tmp_path, free_port())
    try:
        server.start()
        yield server, disk
    finally:
        server.stop()
        subprocess.run(["umount", str(disk)], check=False)


def test_h1_a_full_disk_fails_training_cleanly_and_the_next_run_succeeds(
    mlflow_on_a_small_disk, monkeypatch, capsys
):
    server, disk = mlflow_on_a_small_disk
    filler = disk / "filler"
    with filler.open("wb") as fh:  # fill the disk to the last block
        try:
            while True:
                fh.write(b"\0" * 2**20)
                fh.flush()
        except OSError:
            pass
    assert os.statvfs(disk).f_bavail == 0
    _failing_artifact_store(server, monkeypatch, capsys)
    filler.unlink()  # space freed: the next training succeeds
    assert trainer_main.main() == 0
    client = MlflowClient(server.url, server.url)
    assert client.get_model_version_by_alias("iris-classifier", "champion").version == "1"


def test_the_verified_onnx_graph_is_stored_in_the_registered_logged_model(
    service_env, mlflow_server, tmp_path
):
    import hashlib

    summary = publish.run(TrainerSettings())
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    mv = client.get_model_version(service_env["IRIS_MODEL_NAME"], summary.version)
    model_id = mv.source.removeprefix("models:/")
    logged = client.get_logged_model(model_id)
    digest = logged.tags[DIGEST_TAG]
    local = mlflow.artifacts.download_artifacts(
        f"{logged.artifact_location}/model.onnx", dst_path=str(tmp_path)
    )
    with open(local, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == digest
    # The scikit-learn flavor stays beside it, for people and `mlflow models serve`.
    files = {a.path for a in client.list_logged_model_artifacts(model_id)}
    assert {"MLmodel", "model.onnx"} <= files
    assert client.get_run(summary.run_id).data.tags[DIGEST_TAG] == digest


def test_a_model_that_cannot_be_compiled_is_not_promoted_and_the_run_says_why(
    service_env, mlflow_server, monkeypatch
):
    from iris_services.train import onnx_export

    def unsupported(model, n_features):
        raise onnx_export.ExportFailed("skl2onnx cannot convert FancyClassifier: no converter")

    monkeypatch.setattr(onnx_export, "convert", unsupported)
    summary = publish.run(TrainerSettings())
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    assert not summary.promoted and "could not compile to ONNX" in summary.reason
    assert versions(client, service_env["IRIS_MODEL_NAME"]) == []
    tags = client.get_run(summary.run_id).data.tags
    assert tags["gate"] == "rejected" and "FancyClassifier" in tags[onnx_export.ERROR_TAG]
    assert client.get_run(summary.run_id).info.status == "FINISHED"
