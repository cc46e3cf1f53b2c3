"""`make up` and Prometheus/Alertmanager: the real Makefile and `scripts/install-system-deps`,
run by the real make and bash, with apt-get, sudo, id and irisctl faked first on a PATH that
holds nothing else (so this machine's own Prometheus is not found)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOG = "calls.log"

FAKES = {
    # apt-get: logs its arguments; `install` puts the binaries the packages would on PATH.
    "apt-get": """echo "apt-get $*" >> "$FAKE_DIR/calls.log"
if [ "$1" = install ]; then
  for b in prometheus prometheus-alertmanager; do printf '#!/bin/sh\\n' > "$FAKE_DIR/bin/$b"
  chmod +x "$FAKE_DIR/bin/$b"; done
fi""",
    "id": 'echo "$FAKE_UID"',
    # sudo: `-n true` succeeds only with FAKE_SUDO_OK=1 (no password needed); else runs it.
    "sudo": """echo "sudo $*" >> "$FAKE_DIR/calls.log"
if [ "$1" = -n ]; then [ "$FAKE_SUDO_OK" = 1 ]; exit; fi
"$@\"""",
}


def make_up(tmp_path: Path, uid: int, sudo_ok: bool, installed: bool = False) -> tuple[str, str]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("bash", "make", "dirname", "chmod", "sh"):
        (bindir / tool).symlink_to(shutil.which(tool) or tool)
    for name, body in FAKES.items():
        (bindir / name).write_text("#!/bin/bash\n" + body + "\n")
        (bindir / name).chmod(0o755)
    if installed:
        for b in ("prometheus", "alertmanager"):
            (bindir / b).write_text("#!/bin/sh\n")
            (bindir / b).chmod(0o755)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    irisctl = venv / "bin" / "irisctl"
    irisctl.write_text(f'#!/bin/sh\necho "irisctl $*" >> "{tmp_path / LOG}"\n')
    irisctl.chmod(0o755)
    env = {
        "PATH": str(bindir),
        "FAKE_DIR": str(tmp_path),
        "FAKE_UID": str(uid),
        "FAKE_SUDO_OK": "1" if sudo_ok else "0",
        "HOME": str(tmp_path),
    }
    proc = subprocess.run(
        [str(bindir / "make"), "-s", "-C", str(REPO), "up", f"VENV={venv}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    log = tmp_path / LOG
    return (log.read_text() if log.exists() else ""), proc.stderr


@pytest.mark.parametrize("uid, sudo_ok", [(0, False), (1000, True)], ids=["root", "sudo -n"])
def test_make_up_installs_prometheus_and_alertmanager_when_no_password_is_needed(
    tmp_path, uid, sudo_ok
):
    calls, _ = make_up(tmp_path, uid, sudo_ok)
    sudo = "sudo " if uid else ""
    installs = [ln for ln in calls.splitlines() if "apt-get install" in ln]
    assert installs and installs[0].startswith(f"{sudo}apt-get install")
    assert "prometheus prometheus-alertmanager" in installs[0]
    # Installed before `up`, so `up` starts them.
    assert calls.splitlines()[-1] == "irisctl --target local up"


def test_make_up_without_a_password_goes_on_and_says_the_one_command(tmp_path):
    calls, err = make_up(tmp_path, 1000, sudo_ok=False)
    assert "apt-get" not in calls  # nothing that would prompt
    assert calls.splitlines()[-1] == "irisctl --target local up"
    assert "going on without alerts" in err
    assert "`./scripts/install-system-deps`, then run `.venv/bin/irisctl up` again" in err


def test_make_up_with_both_installed_installs_nothing(tmp_path):
    calls, err = make_up(tmp_path, 0, sudo_ok=True, installed=True)
    assert calls.splitlines() == ["irisctl --target local up"] and err == ""
