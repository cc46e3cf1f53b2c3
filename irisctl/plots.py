"""The accuracy-over-time chart (matplotlib, imported only when a plot is asked for)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import BadInput, IrisctlError

if TYPE_CHECKING:
    from .ops import HistoryRow


def check_path(path: Path) -> None:
    """Refuse a plot path we could not write, before doing any work."""
    if path.suffix.lower() != ".png":
        raise BadInput(f"--plot writes a PNG: {path} does not end in .png")
    if not path.absolute().parent.is_dir():
        raise BadInput(f"--plot: the directory {path.absolute().parent} does not exist")


def accuracy_over_time(rows: list[HistoryRow], path: Path, threshold: float | None = None) -> None:
    """Write a PNG of each run's held-out accuracy; registered runs are circled."""
    check_path(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    scored = [
        (mdates.date2num(datetime.fromtimestamp(r.started_at)), r.accuracy, r)
        for r in rows
        if r.accuracy is not None
    ]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(
        [x for x, _, _ in scored],
        [y for _, y, _ in scored],
        marker="o",
        color="tab:blue",
        label="run accuracy",
    )
    promoted = [(x, y) for x, y, r in scored if r.registered_version]
    ax.scatter(
        [x for x, _ in promoted],
        [y for _, y in promoted],
        s=90,
        facecolors="none",
        edgecolors="tab:green",
        label="registered",
        zorder=3,
    )
    ax.xaxis_date()
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold}")
    ax.set_ylim(min([0.8, *[y for _, y, _ in scored]]) - 0.02, 1.01)
    ax.set_ylabel("held-out accuracy")
    ax.set_title(f"iris-classifier: accuracy over time ({len(scored)} runs)")
    ax.legend(loc="lower left")
    fig.autofmt_xdate()
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise IrisctlError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        plt.close(fig)
