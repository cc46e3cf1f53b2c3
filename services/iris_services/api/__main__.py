"""``python -m iris_services.api``: serve the champion over HTTP on ``PORT`` (default 8080).

``IRIS_API_WORKERS`` processes (default 1) share the port; each holds its own copy of the model
graph and watches the alias itself, and all share one download per graph
(``IRIS_MODEL_CACHE_DIR``) and one feedback spool (``IRIS_FEEDBACK_SPOOL_DIR``). Nothing here
imports mlflow or scikit-learn.
uvloop and httptools are used when installed (uvicorn[standard]):
without them multi-worker uvicorn adds ~44 ms per keep-alive request (PERFORMANCE.md).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from ..common import logs, signing
from ..common.settings import ApiSettings
from ..common.wait import wait_for_http
from .app import create_app
from .mlflow_rest import RestRegistry
from .model_holder import ModelHolder


def build_app() -> FastAPI:
    """The app for one worker process, from the environment."""
    logs.setup()
    settings = ApiSettings()
    if settings.workers > 1:
        _die_with_parent()
    cache = Path(settings.model_cache_dir or tempfile.mkdtemp(prefix="iris-api-models-"))
    rest = RestRegistry(
        settings.tracking_uri,
        settings.model_name,
        settings.model_alias,
        cache,
        timeout_s=settings.mlflow_timeout_s,
        key_file=os.environ.get(signing.KEY_FILE_ENV),
    )
    return create_app(settings, ModelHolder(rest))


PARENT_PID = "IRIS_API_PARENT_PID"


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
    if _parent_gone(os.environ.get(PARENT_PID)):  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _parent_gone(recorded: str | None) -> bool:
    """True when this worker's parent is no longer the process that started the workers.

    Not ``getppid() == 1``: in a container (or ``docker run`` without an init) uvicorn's parent
    *is* PID 1, and every worker would stop right after it starts.
    """
    return bool(recorded) and str(os.getppid()) != recorded


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
    os.environ[PARENT_PID] = str(os.getpid())  # the workers' parent, for _die_with_parent
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Workers inherit this before they import prometheus_client (see metrics.Metrics).
        metrics_dir = tempfile.mkdtemp(prefix="iris-api-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    cache_dir = None
    if not settings.model_cache_dir:  # workers inherit it: one download serves them all
        cache_dir = tempfile.mkdtemp(prefix="iris-api-models-")
        os.environ["IRIS_MODEL_CACHE_DIR"] = cache_dir
    spool_dir = None
    if not settings.feedback_spool_dir:  # one spool for the workers (api/feedback.py)
        spool_dir = tempfile.mkdtemp(prefix="iris-api-feedback-")
        os.environ["IRIS_FEEDBACK_SPOOL_DIR"] = spool_dir
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
        for made in (metrics_dir, cache_dir, spool_dir):  # each worker's last round is done
            if made:
                shutil.rmtree(made, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
