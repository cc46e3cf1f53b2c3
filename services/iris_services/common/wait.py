"""Wait for a dependency with bounded, backed-off retries (the pre-start step)."""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request

log = logging.getLogger(__name__)


def wait_for_http(
    url: str,
    deadline_s: float,
    *,
    timeout_s: float = 3.0,
    max_delay_s: float = 5.0,
    stop: threading.Event | None = None,
) -> bool:
    """Poll ``url`` until it answers 2xx or ``deadline_s`` passes; True when it answered.

    Quiet: one info line when it has to wait (a dependency still starting is normal), one
    warning if it never answered. ``stop`` set: give up at once.
    """
    end = time.monotonic() + deadline_s
    delay = 0.25
    waited = False
    while True:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                if 200 <= resp.status < 300:
                    return True
        except (urllib.error.URLError, OSError) as exc:
            if not waited:
                log.info("waiting for %s", url, extra={"event": "wait", "error": str(exc)})
                waited = True
        if time.monotonic() + delay > end:
            log.warning("%s did not answer within %.0fs", url, deadline_s, extra={"event": "wait"})
            return False
        if stop is not None and stop.wait(delay):
            return False
        if stop is None:
            time.sleep(delay)
        delay = min(delay * 2, max_delay_s)
