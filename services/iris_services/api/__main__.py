"""``python -m iris_services.api``: serve the champion over HTTP on ``PORT`` (default 8080).

``IRIS_API_WORKERS`` processes (default 1) share the port; each holds its own copy of the model
and watches the alias itself. uvloop and httptools are used when installed (uvicorn[standard]):
without them multi-worker uvicorn adds ~44 ms per keep-alive request (PERFORMANCE.md).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import uvicorn
from fastapi import FastAPI

from ..common import logs, registry
from ..common.settings import ApiSettings
from ..common.wait import wait_for_http
from .app import create_app
from .model_holder import MlflowRegistry, ModelHolder


def build_app() -> FastAPI:
    """The app for one worker process, from the environment."""
    logs.setup()
    settings = ApiSettings()
    if settings.workers > 1:
        _die_with_parent()
    client = registry.configure(settings)
    holder = ModelHolder(MlflowRegistry(client, settings.model_name, settings.model_alias))
    return create_app(settings, holder)


def _die_with_parent() -> None:
    """A worker gets SIGTERM when uvicorn's parent process dies, even by SIGKILL (Linux).

    Otherwise orphaned workers keep serving on the port, and the supervisor's restart of the
    API fails with "address already in use".
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def main() -> int:
    settings = ApiSettings()
    logs.setup()
    # Started with MLflow (supervisord, a pod beside it): wait quietly until it answers, so the
    # first load is not a burst of connection-refused retries and registry errors. Bounded by
    # the first-load timeout; after it the workers do not wait again and serve 503 meanwhile.
    mlflow_health = settings.tracking_uri.rstrip("/") + "/health"
    if not wait_for_http(mlflow_health, settings.startup_load_timeout_s, max_delay_s=1.0):
        os.environ["IRIS_STARTUP_LOAD_TIMEOUT_SECONDS"] = "0"
    metrics_dir = None
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Workers inherit this before they import prometheus_client (see app.Metrics).
        metrics_dir = tempfile.mkdtemp(prefix="iris-api-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run(
            "iris_services.api.__main__:build_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
