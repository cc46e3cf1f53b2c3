"""E6: the local target's MLflow database across an MLflow upgrade.

An older schema is made for real: a database written by the installed MLflow, then migrated one
revision down with MLflow's own Alembic migrations (a second, older MLflow cannot be installed
offline). The upgrade is the real `mlflow db upgrade`, and a real server then serves the data.
"""

from __future__ import annotations

import sqlite3
import stat

import pytest
from mlflow import MlflowClient

from irisctl.errors import IrisctlError
from irisctl.targets.local import mlflow_db
from tests.conftest import MlflowServer, free_port


@pytest.fixture
def old_db(tmp_path):
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    client = MlflowClient(uri, uri)
    client.create_registered_model("iris-classifier")
    for _ in range(2):
        client.create_model_version("iris-classifier", source=f"file://{tmp_path}/m", run_id=None)
    client.set_registered_model_alias("iris-classifier", "champion", "2")
    import alembic.command
    from mlflow.store.db.utils import _get_alembic_config

    alembic.command.downgrade(_get_alembic_config(uri), "-1")
    return db


def test_e6_an_older_schema_is_backed_up_then_upgraded_and_served(old_db, tmp_path):
    _, head = mlflow_db.revisions()
    before = mlflow_db.revision(old_db)
    assert head and before and before != head
    said = []
    backup = mlflow_db.upgrade_if_needed(old_db, lambda step, s: said.append(s))
    assert backup is not None and backup.exists()
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert mlflow_db.revision(backup) == before  # the backup is the database as it was
    assert mlflow_db.revision(old_db) == head
    assert any("backed up" in s for s in said)
    assert mlflow_db.upgrade_if_needed(old_db, lambda *a: None) is None  # nothing due now
    server = MlflowServer(tmp_path, free_port())
    server.start()
    try:
        client = MlflowClient(server.url, server.url)
        assert client.get_model_version_by_alias("iris-classifier", "champion").version == "2"
        versions = client.search_model_versions("name='iris-classifier'")
        assert sorted(v.version for v in versions) == ["1", "2"]
    finally:
        server.stop()


def test_e6_a_database_from_a_newer_mlflow_is_refused_untouched(old_db):
    with sqlite3.connect(old_db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    before = old_db.read_bytes()
    with pytest.raises(IrisctlError, match="newer MLflow"):
        mlflow_db.upgrade_if_needed(old_db, lambda *a: None)
    assert old_db.read_bytes() == before
    assert not list(old_db.parent.glob("mlflow.db.backup-*"))


def test_e6_no_database_yet_is_nothing_to_do(tmp_path):
    assert mlflow_db.upgrade_if_needed(tmp_path / "mlflow.db", lambda *a: None) is None
