"""The state file: which target is up and how to reach it, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"


def read(home: Path) -> dict[str, Any] | None:
    """The recorded state, or None when no stack was brought up from this home."""
    try:
        data: dict[str, Any] = json.loads((home / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # a torn or foreign file: treat as not up; `up` rewrites it
    return data


def write(home: Path, state: dict[str, Any]) -> None:
    """Replace the state file atomically (a crash leaves the old or the new, never half)."""
    home.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=home, prefix=".state-")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, home / STATE_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove(home: Path) -> None:
    (home / STATE_FILE).unlink(missing_ok=True)
