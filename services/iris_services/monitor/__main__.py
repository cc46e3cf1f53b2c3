"""``python -m iris_services.monitor``: export registry gauges on ``PORT`` (default 8001)."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading

from prometheus_client import start_http_server

from ..common import logs, registry
from ..common.settings import MonitorSettings
from ..common.wait import wait_for_http
from .exporter import Exporter, MlflowSource

log = logging.getLogger("iris.monitor")
WAIT_FOR_MLFLOW_S = 120.0


def main() -> int:
    logs.setup()
    settings = MonitorSettings()
    client = registry.configure(settings)
    exporter = Exporter(settings, MlflowSource(client, settings))
    server, _ = start_http_server(settings.port, settings.host, registry=exporter.registry)
    log.info("serving metrics", extra={"event": "monitor.start", "port": settings.port})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        # Started with MLflow: wait quietly (one line) until it answers, instead of a warning
        # per poll; the metrics endpoint answers meanwhile, with no registry series yet.
        wait_for_http(
            settings.tracking_uri.rstrip("/") + "/health",
            WAIT_FOR_MLFLOW_S,
            max_delay_s=1.0,
            stop=stop,
        )
        exporter.run_forever(stop)
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
