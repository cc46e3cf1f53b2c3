"""The one rules file and the rendered Prometheus config, checked by the real promtool."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from irisctl import render, settings
from irisctl.render import templates_dir
from irisctl.targets.local import LocalTarget
from tests.conftest import ALERT_NAMES

HERE = Path(__file__).parent
RUNBOOKS = HERE.parents[1] / "services" / "iris_services" / "api" / "runbooks.md"
PROMTOOL = shutil.which("promtool")

if PROMTOOL is None:
    if os.environ.get("CI"):
        raise RuntimeError("promtool is required in CI: apt-get install prometheus")
    pytest.skip("promtool is not installed (apt-get install prometheus)", allow_module_level=True)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


def test_rules_file_passes_promtool_check_with_lint():
    proc = promtool(
        "check",
        "rules",
        "--lint=all",
        "--lint-fatal",
        str(templates_dir() / "prometheus" / "alerts.yml"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "7 rules found" in proc.stdout


def test_d3_d4_rule_unit_tests_pass():
    proc = promtool("test", "rules", str(HERE / "alerts_test.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_severity_summary_description_and_runbook():
    import yaml

    rules = yaml.safe_load((templates_dir() / "prometheus" / "alerts.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    assert {r["alert"] for r in alerts} == ALERT_NAMES
    runbooks = RUNBOOKS.read_text()
    for rule in alerts:
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
        page, anchor = rule["annotations"]["runbook_url"].split("#", 1)
        assert page == render.RUNBOOKS_AT, "a runbook_url the model API does not serve"
        assert f'<a id="{anchor}"></a>' in runbooks, f"runbooks.md has no section {anchor}"


@pytest.mark.parametrize("cap", ["", "1s"])
def test_the_local_target_points_runbooks_at_its_model_api(tmp_path, monkeypatch, cap):
    import yaml

    monkeypatch.setenv("IRISCTL_API_PORT", "18123")
    monkeypatch.setenv("IRISCTL_ALERT_FOR_MAX", cap)
    rules = yaml.safe_load(LocalTarget(settings.load(home=tmp_path)).render()["alerts.yml"])
    urls = [r["annotations"]["runbook_url"] for g in rules["groups"] for r in g["rules"]]
    assert urls and all(u.startswith("http://127.0.0.1:18123/runbooks#runbook-") for u in urls), (
        urls
    )


def test_rendered_local_prometheus_config_passes_promtool(tmp_path):
    target = LocalTarget(settings.load(home=tmp_path))
    files = target.render()
    config_dir = tmp_path / "run"
    config_dir.mkdir()
    for name in ("prometheus.yml", "alerts.yml"):
        (config_dir / name).write_text(files[name])
    proc = promtool("check", "config", str(config_dir / "prometheus.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "scrape_interval: 15s" in files["prometheus.yml"]


AMTOOL = shutil.which("amtool")


@pytest.mark.parametrize("webhook", ["", "https://hooks.example.test/T000/B000"])
def test_rendered_alertmanager_config_passes_amtool(tmp_path, monkeypatch, webhook):
    if AMTOOL is None:
        pytest.fail("amtool is required: apt-get install prometheus-alertmanager")
    monkeypatch.setenv("IRISCTL_ALERT_WEBHOOK_URL", webhook)
    target = LocalTarget(settings.load(home=tmp_path))
    files = target.render()
    assert "alertmanager.yml" in files, "alertmanager is not installed"
    path = tmp_path / "alertmanager.yml"
    path.write_text(files["alertmanager.yml"])
    proc = subprocess.run(
        [AMTOOL, "check-config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    receiver = "webhook" if webhook else "nobody"
    assert f"receiver: {receiver}" in files["alertmanager.yml"]
    assert "alerting:" in files["prometheus.yml"]


def test_capped_for_windows_still_pass_promtool(tmp_path, monkeypatch):
    monkeypatch.setenv("IRISCTL_ALERT_FOR_MAX", "1s")
    rules = LocalTarget(settings.load(home=tmp_path)).render()["alerts.yml"]
    path = tmp_path / "alerts.yml"
    path.write_text(rules)
    proc = promtool("check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import yaml

    fors = [r.get("for") for g in yaml.safe_load(rules)["groups"] for r in g["rules"]]
    assert fors == ["1s", "0m", "0m", "1s", "1s", "1s", "1s"]
