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


def _live_accuracy_expr(rules_text: str) -> str:
    import yaml

    rules = [r for g in yaml.safe_load(rules_text)["groups"] for r in g["rules"]]
    return next(r["expr"] for r in rules if r.get("alert") == render.LIVE_ACCURACY_ALERT)


def test_the_live_accuracy_window_renders_that_rules_ranges_and_nothing_else():
    text = render.read("prometheus/alerts.yml")
    # The file as written is the default window.
    assert f"[{settings.DEFAULTS['live_accuracy_window'][0]}]" == render.LIVE_ACCURACY_RANGE
    assert render.live_accuracy_window(text, "1h") == text
    rendered = render.live_accuracy_window(text, "10m")
    expr = _live_accuracy_expr(rendered)
    assert expr.count("[10m]") == 3 and "[1h]" not in expr, expr
    assert rendered.replace("[10m]", "[1h]") == text, "something besides the ranges changed"
    # Another rule's `[1h]` (none today) keeps its range.
    other = "      - alert: X\n        expr: rate(x[1h]) > 0\n"
    assert render.live_accuracy_window(other + text, "10m").startswith(other)
    with pytest.raises(ValueError, match="IrisLiveAccuracyLow"):
        render.live_accuracy_window(other, "10m")


def _rules_of(target_name: str, home: Path) -> str:
    from irisctl.targets.kube import KubeTarget

    config = settings.load(home=home)
    if target_name == "local":
        return LocalTarget(config).render()["alerts.yml"]
    import yaml

    text = KubeTarget(config, target_name).render()["10-config.yaml"]
    cm = next(d for d in yaml.safe_load_all(text) if d["metadata"]["name"] == "prometheus-config")
    return cm["data"]["alerts.yml"]


@pytest.mark.parametrize("cap", ["", "1s"])
@pytest.mark.parametrize("target_name", ["local", "minikube", "kubernetes"])
def test_every_target_renders_the_live_accuracy_window_setting(
    tmp_path, monkeypatch, target_name, cap
):
    monkeypatch.setenv("IRISCTL_LIVE_ACCURACY_WINDOW", "2m")  # what the e2e tests shorten it to
    monkeypatch.setenv("IRISCTL_ALERT_FOR_MAX", cap)
    rules = _rules_of(target_name, tmp_path)
    expr = _live_accuracy_expr(rules)
    assert expr.count("[2m]") == 3 and "[1h]" not in expr, expr
    path = tmp_path / "alerts.yml"
    path.write_text(rules)
    proc = promtool("check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_shorter_live_accuracy_window_forgets_wrong_labels_sooner(tmp_path):
    (tmp_path / "alerts.yml").write_text(
        render.live_accuracy_window(render.read("prometheus/alerts.yml"), "10m")
    )
    # 10 wrong labels a minute for 20 minutes, then 10 right ones a minute; with the 1h window
    # the alert still fires at 50m (alerts_test.yml), with 10m it has resolved by 35m.
    (tmp_path / "test.yml").write_text(
        """
rule_files: [alerts.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'iris_api_feedback_total{version="3", outcome="correct"}'
        values: '0x20 10+10x100'
      - series: 'iris_api_feedback_total{version="3", outcome="wrong"}'
        values: '0+10x20 200x100'
      - {series: 'iris_api_live_accuracy_threshold', values: '0.9x120'}
      - {series: 'iris_api_live_accuracy_min_labels', values: '50x120'}
    promql_expr_test:
      - expr: ALERTS{alertname="IrisLiveAccuracyLow", alertstate="firing"}
        eval_time: 20m
        exp_samples:
          - labels: >-
              ALERTS{alertname="IrisLiveAccuracyLow", alertstate="firing",
              severity="warning", version="3"}
            value: 1
    alert_rule_test:
      - {eval_time: 35m, alertname: IrisLiveAccuracyLow, exp_alerts: []}
"""
    )
    proc = promtool("test", "rules", str(tmp_path / "test.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
