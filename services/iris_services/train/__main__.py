"""``python -m iris_services.train``: train once; exit 0 whether or not the model was promoted.

Exit codes: 0 the run completed; 1 it failed (nothing was promoted); 75 another training holds
the lock.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import sys

from ..common import logs
from ..common.settings import TrainerSettings
from . import publish

EXIT_FAILED = 1
EXIT_BUSY = 75
EXIT_CANCELLED = 128 + signal.SIGTERM

log = logging.getLogger("iris.trainer")


def main() -> int:
    logs.setup()
    settings = TrainerSettings()
    lock_fd = None
    if settings.lock_file:
        lock_fd = os.open(settings.lock_file, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.error("another training is already running", extra={"event": "training.busy"})
            return EXIT_BUSY
    log.info("training started", extra={"event": "training.start", "pid": os.getpid()})
    # `irisctl train --cancel` (supervisord's stop, a deleted Job's pod) sends SIGTERM: unwind,
    # so the run ends FAILED and the lock is released, instead of dying mid-request.
    signal.signal(signal.SIGTERM, _cancelled)
    try:
        summary = publish.run(settings)
    except KeyboardInterrupt:
        log.warning(
            "training cancelled",
            extra={"event": "training.failed", "error": "cancelled"},
        )
        return EXIT_CANCELLED
    except Exception as exc:
        log.exception(
            "training failed: %s", exc, extra={"event": "training.failed", "error": str(exc)}
        )
        return EXIT_FAILED
    finally:
        if lock_fd is not None:
            os.close(lock_fd)  # closing releases the flock
    verdict = (
        f"promoted version {summary.version} to champion"
        if summary.promoted
        else f"not promoted: {summary.reason}"
    )
    log.info(
        "run %s: accuracy %.3f, %s",
        summary.run_id,
        summary.accuracy,
        verdict,
        extra={"event": "training.summary", **publish.summary_dict(summary)},
    )
    return 0


def _cancelled(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
