"""The seam between irisctl's use cases and where the stack runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

# The contract's service names (DESIGN.md).
SERVICES = ("mlflow", "trainer", "model-api", "monitor", "prometheus")


@dataclass(frozen=True)
class ServiceState:
    """One service as the target sees it."""

    name: str
    state: str  # running, stopped, starting, backoff, fatal, exited, absent
    url: str | None
    uptime_s: float | None = None
    pid: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class TrainOutcome:
    """How one training job ended: its exit code and the trainer's summary record."""

    exit_code: int
    summary: dict[str, object] | None
    error: str | None


Progress = Callable[[str, str], None]  # (step, state) → shows it to the user


class Target(Protocol):
    """Where the stack runs: deploy, run training, reach services, report, tear down."""

    name: str

    def up(self, progress: Progress) -> None:
        """Bring every service up (idempotent) and wait until each is healthy."""

    def is_up(self) -> bool:
        """True when this target's stack is running."""

    def endpoint(self, service: str) -> str:
        """The base URL of a service as reachable from this machine."""

    def services(self) -> list[ServiceState]:
        """Every service and its state."""

    def train(self, on_line: Callable[[str], None], attach: bool = False) -> TrainOutcome:
        """Run one training job now, streaming its log lines.

        If one is already running: refuse, or with ``attach`` follow it to its end instead.
        """

    def logs(self, service: str, follow: bool, tail: int | None) -> Iterator[str]:
        """A service's log lines (``trainer``: the last training run)."""

    def render(self) -> dict[str, str]:
        """The configuration ``up`` would apply, by file name."""

    def down(self, purge: bool) -> list[str]:
        """Stop everything this target started; with ``purge`` delete its data. What was done."""
