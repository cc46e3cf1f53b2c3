"""``python -m iris_services.api``: serve the champion over HTTP on ``PORT`` (default 8080)."""

from __future__ import annotations

import sys

import uvicorn

from ..common import logs, registry
from ..common.settings import ApiSettings
from .app import create_app
from .model_holder import MlflowRegistry, ModelHolder


def main() -> int:
    logs.setup()
    settings = ApiSettings()
    client = registry.configure(settings)
    holder = ModelHolder(MlflowRegistry(client, settings.model_name, settings.model_alias))
    app = create_app(settings, holder)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
