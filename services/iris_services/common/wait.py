"""Wait for a dependency with bounded, backed-off retries (the pre-start step)."""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request

log = logging.getLogger(__name__)


def wait_for_http(url: str, deadline_s: float, *, timeout_s: float = 3.0) -> bool:
    """Poll ``url`` until it answers 2xx or ``deadline_s`` passes; True when it answered."""
    end = time.monotonic() + deadline_s
    delay = 0.5
    while True:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                if 200 <= resp.status < 300:
                    return True
        except (urllib.error.URLError, OSError) as exc:
            log.info("waiting for dependency", extra={"url": url, "error": str(exc)})
        if time.monotonic() + delay > end:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
