"""The model API's workers stop with their parent, and only then (issue 11, defect 3)."""

from __future__ import annotations

import os
import subprocess
import sys

from iris_services.api import __main__ as api_main


def test_a_worker_whose_parent_is_pid_1_keeps_running(monkeypatch):
    """In a pod (or `docker run` without an init) uvicorn's parent is PID 1: not a dead parent."""
    monkeypatch.setattr(os, "getppid", lambda: 1)
    assert not api_main._parent_gone("1")


def test_a_worker_whose_recorded_parent_is_gone_stops(monkeypatch):
    monkeypatch.setattr(os, "getppid", lambda: 1)  # re-parented to init: the parent died
    assert api_main._parent_gone("4242")


def test_a_live_parent_is_recognised_in_a_real_child_process():
    """A real child, started like uvicorn starts its workers, sees its recorded parent alive."""
    code = "from iris_services.api.__main__ import _parent_gone as g, PARENT_PID as k; import os;"
    code += "print(g(os.environ[k]))"
    env = {**os.environ, api_main.PARENT_PID: str(os.getpid())}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
