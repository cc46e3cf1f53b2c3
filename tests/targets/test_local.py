"""The local target's rendered configuration and its small pure helpers (no processes)."""

from __future__ import annotations

import pytest

from iris_services.common import signing
from irisctl import render, settings
from irisctl.targets.local import LocalTarget
from irisctl.targets.local import files as local_files
from irisctl.targets.local.logs import read_new_lines


def target(tmp_path, **flags) -> LocalTarget:
    return LocalTarget(settings.load(flags, home=tmp_path))


def test_g4_e4_every_service_binds_loopback_and_stops_as_a_group(tmp_path):
    conf = target(tmp_path).render()["supervisord.conf"]
    assert "--host 127.0.0.1" in conf  # mlflow
    assert conf.count('HOST="127.0.0.1"') >= 3  # api, monitor, trainer
    assert "0.0.0.0" not in conf
    programs = conf.count("[program:")
    assert conf.count("stopasgroup=true") == programs
    assert conf.count("killasgroup=true") == programs
    assert "chmod=0700" in conf and "umask=077" in conf


def test_h2_mlflow_runs_lean_with_its_store_in_the_environment(tmp_path):
    t = target(tmp_path)
    mlflow = next(p for p in t.programs() if p.name == "mlflow")
    assert (
        "--workers" in mlflow.command
        and mlflow.command[mlflow.command.index("--workers") + 1] == "1"
    )
    assert "--serve-artifacts" in mlflow.command
    assert mlflow.env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert mlflow.env["MLFLOW_BACKEND_STORE_URI"].startswith("sqlite:///")
    assert not any("sqlite" in arg for arg in mlflow.command)


def test_ports_and_settings_flow_into_the_config(tmp_path):
    t = target(tmp_path, api_port=18080, accuracy_threshold=0.8, train_seed=7)
    files = t.render()
    assert 'PORT="18080"' in files["supervisord.conf"]
    assert 'IRIS_ACCURACY_THRESHOLD="0.8"' in files["supervisord.conf"]
    assert 'IRIS_SEED="7"' in files["supervisord.conf"]
    assert '"127.0.0.1:18080"' in files["prometheus.yml"]


def test_supervisor_env_quotes_and_escapes():
    assert render.supervisor_env({"A": 'x"y', "B": "50%", "C": "a,b"}) == (
        'A="x\\"y",B="50%%",C="a,b"'
    )


def test_rules_are_shipped_verbatim_without_a_cap(tmp_path):
    assert target(tmp_path).render()["alerts.yml"] == render.read("prometheus/alerts.yml")


def test_read_new_lines_returns_complete_lines_and_survives_rotation(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("one\ntwo\npart")
    lines, offset = read_new_lines(log, 0)
    assert lines == ["one", "two"] and offset == 8
    with log.open("a") as fh:
        fh.write("ial\n")
    lines, offset = read_new_lines(log, offset)
    assert lines == ["partial"]
    log.write_text("new\n")  # rotated: smaller than the offset
    assert read_new_lines(log, offset) == (["new"], 4)


def test_d1_without_prometheus_the_rest_still_runs_and_alerts_say_why(tmp_path, monkeypatch):
    import shutil as _shutil

    from irisctl import ops
    from irisctl.targets.base import ServiceState

    real_which = _shutil.which
    monkeypatch.setattr(
        "irisctl.targets.local.layout.shutil.which",
        lambda name, *a, **k: (
            None if "prometheus" in name or "alertmanager" in name else real_which(name, *a, **k)
        ),
    )
    t = target(tmp_path)
    names = {p.name for p in t.programs()}
    assert names == {"mlflow", "model-api", "monitor", "trainer", "scheduler"}
    files = t.render()
    assert (
        "alertmanager.yml" not in files and "[program:prometheus]" not in files["supervisord.conf"]
    )
    alerts, reason = ops._alerts(t, [ServiceState("prometheus", "absent", None)])
    assert alerts is None and "apt-get install prometheus" in (reason or "")


def test_mlflow_telemetry_is_off_in_every_python_process_unless_opted_in(tmp_path):
    python = {"mlflow", "model-api", "monitor", "trainer", "scheduler"}
    programs = [p for p in target(tmp_path).programs() if p.name in python]
    assert {p.name for p in programs} == python
    for p in programs:
        assert p.env["MLFLOW_DISABLE_TELEMETRY"] == "true" == p.env["DO_NOT_TRACK"], p.name
    opted_in = target(tmp_path, mlflow_telemetry="true").programs()
    assert all(p.env["MLFLOW_DISABLE_TELEMETRY"] == "false" for p in opted_in if p.name in python)


def test_promotion_tolerance_reaches_the_trainer_only_when_set(tmp_path):
    def trainer_env(**flags):
        return next(p for p in target(tmp_path, **flags).programs() if p.name == "trainer").env

    assert "IRIS_PROMOTION_TOLERANCE" not in trainer_env()
    assert trainer_env(promotion_tolerance=0.05)["IRIS_PROMOTION_TOLERANCE"] == "0.05"


def test_one_comment_for_all_programs_not_one_copy_each(tmp_path):
    conf = target(tmp_path).render()["supervisord.conf"]
    assert conf.count("[program:") >= 5
    assert conf.count("whole process group") == 1


def test_prometheus_names_the_address_irisctl_prints_in_generator_urls(tmp_path, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")
    t = target(tmp_path, prometheus_port=19091)
    prom = next(p for p in t.programs() if p.name == "prometheus")
    assert "--web.external-url=http://127.0.0.1:19091/" in prom.command


def test_running_with_different_settings_names_what_differs(tmp_path):
    from irisctl.targets.local.files import changed_settings

    before = target(tmp_path).render()["supervisord.conf"]
    after = target(tmp_path, api_workers=3, train_schedule="0,30 * * * *").render()
    changed = changed_settings(before, after["supervisord.conf"])
    assert "model-api: IRIS_API_WORKERS" in changed[0] and changed[0].endswith("→ 3")
    assert "scheduler: IRIS_TRAIN_SCHEDULE 0 3 * * * → 0,30 * * * *" in changed
    assert changed_settings(before, before) == []


@pytest.mark.parametrize("umask", [0o077, 0o022, 0o000, 0o277])
def test_the_signing_key_file_is_0600_whatever_the_umask_and_kept_across_ups(tmp_path, umask):
    import os
    import stat

    t = target(tmp_path)
    old = os.umask(umask)
    try:
        local_files.write(t.layout, {})
        key = t.signing_key_file.read_text()
        t.signing_key_file.chmod(0o644)  # loosened by hand: the next `up` tightens it
        local_files.write(t.layout, {})
    finally:
        os.umask(old)
    assert t.signing_key_file.parent == tmp_path / "data"
    assert stat.S_IMODE(t.signing_key_file.stat().st_mode) == 0o600
    assert t.signing_key_file.read_text() == key  # kept: versions signed before stay valid
    assert t.secrets() == {signing.SECRET_KEY: key.strip()}


def test_only_the_trainer_and_the_api_are_given_the_signing_key(tmp_path):
    holders = {p.name for p in target(tmp_path).programs() if signing.KEY_FILE_ENV in p.env}
    assert holders == {"model-api", "trainer"}
    assert str(target(tmp_path).signing_key_file) not in str(
        next(p for p in target(tmp_path).programs() if p.name == "mlflow")
    )


def test_status_url_is_the_base_and_the_page_a_person_opens_is_page(tmp_path, monkeypatch):
    """Scripts append API paths to `url`, so it is scheme://host:port for every service."""
    from irisctl.targets.local.layout import HEALTH_PATHS

    t = target(tmp_path)
    info = {"statename": "RUNNING", "pid": 7, "start": 0, "now": 5, "exitstatus": 0}
    monkeypatch.setattr(t.supervisor, "running", lambda: True)
    monkeypatch.setattr(t.supervisor, "processes", lambda: {n: dict(info) for n in HEALTH_PATHS})
    # A Prometheus with the classic UI (Debian's 2.42) answers /classic/alerts.
    monkeypatch.setattr("irisctl.targets.local.target.web.healthy", lambda url, timeout: True)
    services = {s.name: s for s in t.services()}
    for name in HEALTH_PATHS:
        assert services[name].url == t.endpoint(name), name
    assert services["prometheus"].page == t.endpoint("prometheus") + "/classic/alerts"
    assert services["alertmanager"].page == t.endpoint("alertmanager") + "/api/v2/alerts"


def test_up_again_adds_prometheus_and_alertmanager_installed_since(tmp_path, monkeypatch):
    """`make up` without a password goes on without them and says: install, then `up` again."""
    import shutil as _shutil

    real_which = _shutil.which
    missing = {"on": True}
    monkeypatch.setattr(
        "irisctl.targets.local.layout.shutil.which",
        lambda name, *a, **k: (
            None
            if missing["on"] and ("prometheus" in name or "alertmanager" in name)
            else real_which(name, *a, **k)
        ),
    )
    before = target(tmp_path)
    local_files.write(before.layout, before.render())  # the stack as the first `up` left it
    missing["on"] = False
    t = target(tmp_path)
    added: list[str] = []
    monkeypatch.setattr(t.supervisor, "running", lambda: True)
    monkeypatch.setattr(
        t.supervisor, "add_programs", lambda: added.extend(["alertmanager", "prometheus"]) or added
    )
    starting = {"statename": "STARTING"}
    monkeypatch.setattr(
        t.supervisor, "processes", lambda: {"prometheus": starting, "alertmanager": starting}
    )
    monkeypatch.setattr(t.supervisor, "start_process", lambda name: False)
    monkeypatch.setattr(t, "_wait_healthy", lambda progress: None)
    said: list[tuple[str, str]] = []
    t.up(lambda name, what: said.append((name, what)))
    assert ("prometheus", "added") in said and ("alertmanager", "added") in said
    assert not [n for n, what in said if what == "restarted"]  # seen in a real run: it said so
    assert "[program:prometheus]" in (t.run_dir / "supervisord.conf").read_text()
    assert (t.run_dir / "prometheus.yml").exists()


def test_the_files_up_writes_are_0600_as_alertmanager_yml_holds_the_webhook_url(tmp_path):
    """Debian's Alertmanager 0.25 has no `url_file`, so locally the URL is in the config file:
    only its owner may read it, whatever the umask (issue 25 item 7)."""
    import os
    import stat

    url = "https://hooks.example.test/tok3n"
    t = target(tmp_path, alert_webhook_url=url)
    files = t.render()
    old = os.umask(0o022)
    try:
        local_files.write(t.layout, files)
    finally:
        os.umask(old)
    written = t.run_dir / "alertmanager.yml"
    if "alertmanager.yml" not in files:
        pytest.fail("Alertmanager is required here: apt-get install prometheus-alertmanager")
    assert url in written.read_text()
    for name in files:
        assert stat.S_IMODE((t.run_dir / name).stat().st_mode) == 0o600, name


def test_minio_has_no_log_on_the_local_target(tmp_path):
    """MinIO runs only on the Kubernetes targets: `logs minio` says so (exit 2, bad input)."""
    from irisctl.errors import BadInput

    with pytest.raises(BadInput, match="minio runs only on the Kubernetes targets"):
        list(target(tmp_path).logs("minio", follow=False, tail=None))


def test_the_model_api_gets_the_feedback_settings_and_a_0700_spool_dir_under_the_data(
    tmp_path, monkeypatch
):
    import os
    import stat

    from iris_services.common.settings import ApiSettings

    t = target(tmp_path, feedback_max_age_days=0.5, live_accuracy_min_labels=20)
    api = next(p for p in t.programs() if p.name == "model-api")
    spool = t.layout.data_dir / "feedback-spool"  # `down --purge` deletes it with the data
    old = os.umask(0o022)
    try:
        local_files.write(t.layout, {})
    finally:
        os.umask(old)
    assert stat.S_IMODE(spool.stat().st_mode) == 0o700
    for name, value in api.env.items():
        monkeypatch.setenv(name, value)
    read = ApiSettings()  # what the API makes of them
    assert read.feedback_max_age_s == 43200
    assert read.live_accuracy_min_labels == 20
    assert read.feedback_spool_dir == str(spool)
    # The workers of one API share one spool; the trainer needs none.
    trainer = next(p for p in t.programs() if p.name == "trainer")
    assert "IRIS_FEEDBACK_SPOOL_DIR" not in trainer.env
    assert f"would delete {t.layout.data_dir}" in t.down(purge=True, dry_run=True)
