"""What the CLI prints and accepts cannot be turned against its user (issue 25, items 8 and 9)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from irisctl import cli

runner = CliRunner()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IRISCTL_HOME", str(tmp_path / "home"))
    for var in ("IRISCTL_TARGET", "IRISCTL_TRAIN_SCHEDULE", "IRISCTL_REGISTRY"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "home"


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("IRISCTL_TRAIN_SCHEDULE", "0 3 * * *\n[program:evil]\ncommand=/bin/sh -c id"),
        ("IRISCTL_REGISTRY", "reg.example\n  hostNetwork: true"),
        ("IRISCTL_ALERT_WEBHOOK_URL", "http://x/\r\nX-Evil: 1"),
        ("IRISCTL_NAMESPACE", "iris\x1b[2J"),
    ],
)
def test_a_control_character_in_a_setting_exits_2_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, home: Path, env: str, value: str
) -> None:
    monkeypatch.setenv(env, value)
    result = runner.invoke(cli.app, ["up", "--target", "local"])
    assert result.exit_code == 2, result.output
    assert "control character" in result.output
    assert not (home / "run" / "supervisord.conf").exists()


def test_a_control_character_in_the_config_file_exits_2(home: Path) -> None:
    home.mkdir(parents=True)
    (home / "config.toml").write_text('registry = "reg.example\\n  privileged: true"\n')
    result = runner.invoke(cli.app, ["render", "--target", "kubernetes"])
    assert result.exit_code == 2, result.output
    assert "registry" in result.output and "control character" in result.output
