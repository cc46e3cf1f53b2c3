"""The monitor against a real MLflow registry, and with MLflow gone."""

from __future__ import annotations

import time
import urllib.request

import pytest
from prometheus_client import start_http_server

from iris_services.common import registry
from iris_services.common.settings import MonitorSettings, TrainerSettings
from iris_services.monitor.exporter import Exporter, LastRun, MlflowSource, Snapshot
from iris_services.train import publish
from tests.conftest import free_port


def scrape(exporter: Exporter) -> dict[str, float]:
    """Serve the exporter's registry over real HTTP once and parse the samples."""
    port = free_port()
    server, thread = start_http_server(port, "127.0.0.1", registry=exporter.registry)
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
        thread.join(5)
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples


def test_gauges_match_the_registry(service_env):
    summary = publish.run(TrainerSettings())
    settings = MonitorSettings()
    client = registry.configure(settings)
    exporter = Exporter(settings, MlflowSource(client, settings))
    assert exporter.update()
    samples = scrape(exporter)
    label = f'{{model="{settings.model_name}"}}'
    mv = client.get_model_version_by_alias(settings.model_name, "champion")
    run = client.get_run(summary.run_id)
    assert samples[f"iris_model_accuracy{label}"] == pytest.approx(summary.accuracy)
    # MLflow stores milliseconds; the gauge is in seconds (RELIABILITY.md D4).
    assert samples[f"iris_model_last_registered_timestamp_seconds{label}"] == pytest.approx(
        mv.creation_timestamp / 1000.0
    )
    assert abs(samples[f"iris_model_last_registered_timestamp_seconds{label}"] - time.time()) < 300
    assert samples[f"iris_training_last_run_timestamp_seconds{label}"] == pytest.approx(
        run.info.end_time / 1000.0
    )
    assert samples[f"iris_training_last_run_success{label}"] == 1.0
    assert samples[f"iris_model_accuracy_threshold{label}"] == 0.9
    assert samples[f"iris_model_stale_threshold_seconds{label}"] == 36 * 3600
    assert samples["iris_monitor_mlflow_up"] == 1.0


def test_no_champion_exports_no_model_gauges(service_env):
    settings = MonitorSettings()
    exporter = Exporter(settings, MlflowSource(registry.configure(settings), settings))
    assert exporter.update()
    samples = scrape(exporter)
    assert not any(k.startswith("iris_model_accuracy{") for k in samples)
    assert samples["iris_monitor_mlflow_up"] == 1.0


def test_d3_mlflow_down_keeps_metrics_and_marks_the_scrape_failed(monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    settings = MonitorSettings()
    exporter = Exporter(settings, MlflowSource(registry.configure(settings), settings))
    assert not exporter.update()
    samples = scrape(exporter)
    assert samples["iris_monitor_mlflow_up"] == 0.0
    assert any("could not read the registry" in r.getMessage() for r in caplog.records)


class StubSource:
    """Snapshots from memory: the seam between the exporter and MLflow."""

    def __init__(self, *snapshots: Snapshot | Exception) -> None:
        self.snapshots = list(snapshots)

    def read(self) -> Snapshot:
        item = self.snapshots.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


def test_d3_registry_outage_keeps_the_last_values_so_staleness_still_counts():
    from iris_services.common.alias import Champion

    champ = Champion("iris-classifier", "7", "champion", 0.95, 1_000.0, None, "")
    exporter = Exporter(
        MonitorSettings(),
        StubSource(Snapshot(champ, LastRun(2_000.0, False, 0.5)), ConnectionError("down")),
    )
    assert exporter.update() and not exporter.update()
    samples = scrape(exporter)
    assert (
        samples['iris_model_last_registered_timestamp_seconds{model="iris-classifier"}'] == 1000.0
    )
    assert samples['iris_training_last_run_success{model="iris-classifier"}'] == 0.0
    assert samples['iris_model_version{model="iris-classifier"}'] == 7.0
    assert samples["iris_monitor_mlflow_up"] == 0.0


def test_a_revalidated_champion_exports_its_validation_time_and_its_new_score():
    from iris_services.common.alias import Champion

    champ = Champion(
        "iris-classifier", "7", "champion", 0.97, 1_000.0, None, "", 0.83, validated_at=5_000.0
    )
    fresh = Champion("iris-classifier", "8", "champion", 0.93, 9_000.0, None, "")
    exporter = Exporter(MonitorSettings(), StubSource(Snapshot(champ, None), Snapshot(fresh, None)))
    assert exporter.update()
    samples = scrape(exporter)
    label = '{model="iris-classifier"}'
    assert samples[f"iris_model_last_validated_timestamp_seconds{label}"] == 5_000.0
    assert samples[f"iris_model_last_registered_timestamp_seconds{label}"] == 1_000.0
    assert samples[f"iris_model_accuracy{label}"] == 0.83  # the re-score, not the 0.97 of old
    assert exporter.update()  # never re-validated yet: registration is its validation
    samples = scrape(exporter)
    assert samples[f"iris_model_last_validated_timestamp_seconds{label}"] == 9_000.0
    assert samples[f"iris_model_accuracy{label}"] == 0.93
