"""``python -m iris_services.mlflow_server [mlflow server flags]``: ``mlflow server`` with the
AI Gateway off and the gateway's and assistant's routes answering 404 (see the package)."""

from __future__ import annotations

import os
import sys
from typing import Any

MLFLOW_APP = "mlflow.server.fastapi_app:app"
OUR_APP = "iris_services.mlflow_server.app:app"


def main(argv: list[str] | None = None) -> None:
    # Off in this process and the uvicorn workers it spawns (they inherit the environment).
    os.environ["MLFLOW_ENABLE_AI_GATEWAY"] = "false"
    import mlflow.server as server
    from mlflow.cli import server as server_command

    build_uvicorn = server._build_uvicorn_command

    # `mlflow server` runs `uvicorn mlflow.server.fastapi_app:app` in a child process, and only an
    # installed `mlflow.app` entry point could name another app (our image has none). So swap the
    # app in the command it builds; everything else (stores, flags, env) stays MLflow's own.
    # gunicorn/waitress would serve the bare Flask app, so they are refused, as is --app-name.
    def uvicorn_command(
        opts: Any, host: Any, port: Any, workers: Any, app: str, *a: Any, **kw: Any
    ):
        if app != MLFLOW_APP:
            raise SystemExit(f"iris_services.mlflow_server serves MLflow's own app, not {app}")
        return build_uvicorn(opts, host, port, workers, OUR_APP, *a, **kw)

    def refuse(*_: Any, **__: Any) -> list[str]:
        raise SystemExit("iris_services.mlflow_server runs uvicorn only (no gunicorn/waitress)")

    server._build_uvicorn_command = uvicorn_command  # type: ignore[assignment]
    server._build_gunicorn_command = refuse
    server._build_waitress_command = refuse
    server_command.main(
        args=sys.argv[1:] if argv is None else argv,
        prog_name="python -m iris_services.mlflow_server",
    )


if __name__ == "__main__":
    main()
