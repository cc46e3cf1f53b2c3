"""The served model: loaded once, checked in the background, swapped atomically.

A new champion is loaded and smoke-tested off to the side; only then is one reference swapped,
so in-flight requests finish on the model they started with and none waits. Any failure keeps
the current model (RELIABILITY.md B2-B4).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..common.alias import Champion
from .mlflow_rest import Refused

log = logging.getLogger("iris.api")

# One canonical flower per class: a new model must get all three right before it is served.
CANONICAL = np.array([[5.1, 3.5, 1.4, 0.2], [6.4, 3.2, 4.5, 1.5], [6.3, 3.3, 6.0, 2.5]])


@dataclass(frozen=True)
class Loaded:
    """A model in memory and what it is."""

    model: Any  # a graph.GraphModel in production: anything with predict_proba(rows)
    champion: Champion
    loaded_at: float

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(rows)

    @property
    def sha256(self) -> str | None:
        """The served graph's digest (what /model reports)."""
        return getattr(self.model, "sha256", None)


class Registry(Protocol):
    """Where the holder learns the champion and loads it (MLflow's REST API in production)."""

    def champion(self) -> Champion | None: ...

    def load(self, champion: Champion) -> Any: ...


class ModelHolder:
    """Holds the current model; ``refresh`` swaps in a new champion when the alias moves."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self.current: Loaded | None = None
        self.last_error: str | None = None
        self.last_reason: str | None = None  # last_error without internal detail, for /model
        self.failed_version: str | None = None
        self.load_failures = 0
        self.registry_answered = False
        self._on_swap: list[Callable[[Loaded | None, Loaded], None]] = []
        self._on_prepare: list[Callable[[Champion], None]] = []
        self._on_failure: list[Callable[[], None]] = []
        self._lock = threading.Lock()  # one refresh at a time; readers never take it

    def on_swap(self, callback: Callable[[Loaded | None, Loaded], None]) -> None:
        """Call ``callback(old, new)`` after each swap."""
        self._on_swap.append(callback)

    def on_prepare(self, callback: Callable[[Champion], None]) -> None:
        """Call ``callback(champion)`` once a new champion has loaded, before it is swapped in
        (what its first answers need, fetched while nothing waits on it)."""
        self._on_prepare.append(callback)

    def on_failure(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after each champion that failed to load."""
        self._on_failure.append(callback)

    def refresh(self) -> bool:
        """Check the alias; load and swap if it moved. True when a new model was swapped in."""
        with self._lock:
            try:
                champion = self._registry.champion()
            except Exception as exc:  # registry down: keep serving what we have
                self._record_error(f"could not read the registry: {exc}", None)
                return False
            self.registry_answered = True
            if champion is None:
                return False
            current = self.current
            if current and current.champion.version == champion.version:
                return False
            if champion.version == self.failed_version:
                return False  # already failed to load; wait for the alias to move again
            try:
                model = self._registry.load(champion)
                predicted = [int(i) for i in model.predict_proba(CANONICAL).argmax(axis=1)]
                if predicted != [0, 1, 2]:
                    raise ValueError(
                        f"smoke test failed: canonical flowers predicted as {predicted}"
                    )
            except Exception as exc:
                self.load_failures += 1
                self._record_error(
                    f"could not load version {champion.version}: {exc}",
                    champion.version,
                    str(exc) if isinstance(exc, Refused) else None,
                )
                for failed in self._on_failure:
                    failed()
                return False
            for prepare in self._on_prepare:
                try:
                    prepare(champion)
                except Exception:  # a helper's failure never keeps a good model from serving
                    log.exception("preparing version %s failed", champion.version)
            self.current = Loaded(model=model, champion=champion, loaded_at=time.time())
            self.last_error = self.last_reason = None
            self.failed_version = None
            log.info(
                "serving version %s",
                champion.version,
                extra={
                    "event": "model.swapped",
                    "version": champion.version,
                    "previous": current.champion.version if current else None,
                },
            )
            for callback in self._on_swap:
                callback(current, self.current)
            return True

    def _record_error(self, message: str, version: str | None, public: str | None = None) -> None:
        """Log ``message``; ``/model`` shows ``public`` (our own refusal) or a generic line."""
        if message != self.last_error:
            log.error(message, extra={"event": "model.load_failed", "version": version})
        self.last_error = message
        if version is None:
            self.last_reason = "could not read the registry"
        elif public is not None:
            self.last_reason = f"version {version}: {public}"
        else:
            self.last_reason = f"could not load version {version} (see the API's log)"
        if version is not None:
            self.failed_version = version

    def first_load(self, deadline_s: float, stop: threading.Event) -> None:
        """Until the registry has answered once (MLflow may still be starting), or the deadline."""
        deadline = time.monotonic() + deadline_s
        while not stop.is_set():
            self.refresh()
            if self.registry_answered or time.monotonic() > deadline:
                return
            stop.wait(0.5)

    def run_forever(self, interval_s: float, stop: threading.Event) -> None:
        """Poll the alias every ``interval_s`` until ``stop`` is set."""
        while not stop.is_set():
            self.refresh()
            stop.wait(interval_s)
