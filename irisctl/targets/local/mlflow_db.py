"""MLflow's sqlite database across MLflow upgrades (RELIABILITY.md E6).

A server refuses to start on a database whose schema is older than its own. Before the local
target starts MLflow, ``upgrade_if_needed`` compares the database's Alembic revision with the
installed MLflow's head revision (read from its migration files, without importing mlflow),
backs the database up (sqlite's online backup, 0600) and runs ``mlflow db upgrade``. A database
written by a newer MLflow is refused, never touched.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from ...errors import IrisctlError
from ..base import Progress

_REVISION = re.compile(r"^revision\s*(?::\s*str\s*)?=\s*['\"]([0-9a-f]+)['\"]", re.M)
_DOWN = re.compile(r"^down_revision\s*(?::[^=]*)?=\s*(.+)$", re.M)


def revisions() -> tuple[set[str], str | None]:
    """Every migration revision the installed MLflow knows, and its single head (or None)."""
    spec = importlib.util.find_spec("mlflow")
    if spec is None or spec.origin is None:
        return set(), None
    folder = Path(spec.origin).parent / "store" / "db_migrations" / "versions"
    known: set[str] = set()
    parents: set[str] = set()
    for path in folder.glob("*.py"):
        text = path.read_text(errors="replace")
        if m := _REVISION.search(text):
            known.add(m.group(1))
        if d := _DOWN.search(text):
            parents.update(re.findall(r"['\"]([0-9a-f]+)['\"]", d.group(1)))
    heads = known - parents
    return known, (heads.pop() if len(heads) == 1 else None)


def revision(db: Path) -> str | None:
    """The database's Alembic revision (None: no MLflow tables yet)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None


def upgrade_if_needed(db: Path, progress: Progress) -> Path | None:
    """Back up and upgrade an older database; the backup's path, or None when nothing was due."""
    if not db.exists():
        return None
    current = revision(db)
    known, head = revisions()
    if current is None or head is None or current == head:
        return None
    if current not in known:
        raise IrisctlError(
            f"{db} was written by a newer MLflow (schema revision {current}) than the one "
            "installed; irisctl will not start MLflow on it",
            "install the MLflow version that wrote it, or restore one of the "
            f"{db.name}.backup-* files next to it",
        )
    backup = db.with_name(f"{db.name}.backup-{current}-{time.strftime('%Y%m%dT%H%M%S')}")
    with sqlite3.connect(db) as src, sqlite3.connect(backup) as dst:
        src.backup(dst)  # a consistent copy even if something holds the database open
    os.chmod(backup, 0o600)
    progress("mlflow", f"schema {current} is older than this MLflow's {head}: backed up, upgrading")
    proc = subprocess.run(
        [sys.executable, "-m", "mlflow", "db", "upgrade", f"sqlite:///{db}"],
        # No usage telemetry from a process irisctl starts (README, "Privacy").
        env={"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", **os.environ},
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise IrisctlError(
            f"`mlflow db upgrade` failed: {lines[-1][:300] if lines else proc.returncode}",
            f"the database before the upgrade is in {backup}; copy it back over {db} to retry",
        )
    progress("mlflow", f"database upgraded to {head} (backup: {backup})")
    return backup
