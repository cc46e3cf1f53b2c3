"""The local services' logs: files under ``IRISCTL_HOME/logs`` that supervisord writes, read
whole, tailed, or followed as they grow."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from ...errors import BadInput, IrisctlError


def logs(logs_dir: Path, service: str, follow: bool, tail: int | None) -> Iterator[str]:
    """A service's log lines (``trainer``: its last run only), then, with ``follow``, new ones."""
    if service == "minio":
        raise BadInput(
            "minio runs only on the Kubernetes targets; the local target stores "
            "artifacts in a directory"
        )
    path = logs_dir / f"{service}.log"
    if not path.exists():
        raise IrisctlError(
            f"no log for {service} yet ({path})",
            "run `irisctl up` (and `irisctl train --now` for the trainer)",
        )
    lines = path.read_text(errors="replace").splitlines()
    if service == "trainer":  # the last training run only
        starts = [i for i, ln in enumerate(lines) if '"training.start"' in ln]
        if starts:
            lines = lines[starts[-1] :]
    if tail is not None:
        lines = lines[-tail:] if tail > 0 else []
    yield from lines
    if follow:
        offset = path.stat().st_size
        while True:
            new, offset = read_new_lines(path, offset)
            yield from new
            if not new:
                time.sleep(0.3)


def last_line(logs_dir: Path, name: str) -> str:
    """The service's last log line, else supervisord's last word about it."""
    for path, keep in (
        (logs_dir / f"{name}.log", lambda ln: True),
        (logs_dir / "supervisord.log", lambda ln: f" {name}" in ln),
    ):
        if path.exists():
            lines = [
                ln
                for ln in path.read_text(errors="replace").splitlines()
                if ln.strip() and keep(ln)
            ]
            if lines:
                return lines[-1][:300]
    return "no log"


def read_new_lines(path: Path, offset: int) -> tuple[list[str], int]:
    """Complete lines appended to ``path`` since ``offset`` (rotation restarts at 0)."""
    if not path.exists():
        return [], offset
    size = path.stat().st_size
    if size < offset:
        offset = 0
    if size == offset:
        return [], offset
    with path.open("rb") as fh:
        fh.seek(offset)
        data = fh.read()
    end = data.rfind(b"\n") + 1
    if end == 0:
        return [], offset
    return data[:end].decode(errors="replace").splitlines(), offset + end
