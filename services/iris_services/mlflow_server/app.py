"""The ASGI app ``python -m iris_services.mlflow_server`` serves: MLflow's, minus two features."""

from __future__ import annotations

import json
import os
from typing import Any

from mlflow.server.fastapi_app import app as mlflow_app
from mlflow.server.handlers import STATIC_PREFIX_ENV_VAR

from . import blocked

NOT_FOUND = json.dumps(
    {"error_code": "ENDPOINT_NOT_FOUND", "message": "not served here (irisctl)"}
).encode()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """MLflow's FastAPI app, answering 404 on the gateway's and the assistant's routes."""
    if scope["type"] in ("http", "websocket"):
        prefixes = (os.environ.get(STATIC_PREFIX_ENV_VAR, ""), scope.get("root_path", ""))
        if blocked(scope["path"], prefixes):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": NOT_FOUND})
            return
    await mlflow_app(scope, receive, send)
