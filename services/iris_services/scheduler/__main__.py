"""``python -m iris_services.scheduler``: start supervisord's ``trainer`` on a cron schedule.

Runs only under supervisord (the local target), which hands its children
``SUPERVISOR_SERVER_URL``; starting the ``trainer`` program there (rather than a subprocess)
keeps one training at a time and one trainer log, whoever starts it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime

from croniter import croniter
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..common import logs

log = logging.getLogger("iris.scheduler")


class SchedulerSettings(BaseSettings):
    """The scheduler's settings."""

    model_config = SettingsConfigDict(extra="ignore")
    schedule: str = Field("0 3 * * *", validation_alias="IRIS_TRAIN_SCHEDULE")
    program: str = Field("trainer", validation_alias="IRIS_TRAIN_PROGRAM")


def start_training(program: str) -> None:
    """Ask supervisord to start the trainer; a training already running is not an error."""
    from supervisor import childutils, xmlrpc

    rpc = childutils.getRPCInterface(os.environ)
    try:
        rpc.supervisor.startProcess(program, False)
        log.info("started a scheduled training", extra={"event": "schedule.fired"})
    except Exception as exc:
        if getattr(exc, "faultCode", None) == xmlrpc.Faults.ALREADY_STARTED:
            log.info("skipped: a training is already running", extra={"event": "schedule.skipped"})
        else:
            log.error("could not start the trainer: %s", exc, extra={"event": "schedule.failed"})


def main() -> int:
    logs.setup()
    settings = SchedulerSettings()
    if not croniter.is_valid(settings.schedule):
        log.error("invalid cron expression %r", settings.schedule)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    schedule = croniter(settings.schedule, datetime.now(UTC))
    while not stop.is_set():
        due = schedule.get_next(float)
        log.info(
            "next training at %s UTC",
            datetime.fromtimestamp(due, UTC).isoformat(timespec="minutes"),
            extra={"event": "schedule.next", "due": due},
        )
        while not stop.is_set() and time.time() < due:
            stop.wait(min(60.0, max(0.0, due - time.time())))
        if not stop.is_set():
            start_training(settings.program)
    return 0


if __name__ == "__main__":
    sys.exit(main())
