"""MLflow's server with only tracking, the registry, artifacts and the UI reachable.

MLflow 3.17 also mounts its AI Gateway (``/gateway/…``, ``/…/mlflow/gateway…``) and its
Assistant (``/ajax-api/3.0/mlflow/assistant/…``), whose API runs a Bash tool on the host for any
loopback client once a provider (a ``claude`` or ``codex`` on PATH) is found; through a
port-forward every client is loopback. Nothing here uses either, so ``app`` answers 404 there.
"""

from __future__ import annotations

import posixpath
import re

# Prefixes of MLflow 3.17's gateway and assistant routes (mlflow/server/fastapi_app.py mounts
# gateway_router at /gateway and assistant_router at /ajax-api/3.0/mlflow/assistant; the Flask
# app has /{api,ajax-api}/{2.0,3.0}/mlflow/gateway/… and /ajax-api/2.0/mlflow/gateway-proxy).
BLOCKED = re.compile(r"^/(?:gateway(?:/|$)|(?:ajax-)?api/[^/]+/mlflow/(?:gateway|assistant))")


def blocked(path: str, prefixes: tuple[str, ...] = ()) -> bool:
    """Whether ``path`` (after any of ``prefixes``) names a gateway or assistant route."""
    # Collapse // and dot segments first: Werkzeug merges slashes and redirects to the route.
    normal = posixpath.normpath(re.sub("/+", "/", "/" + path))  # one leading /, not POSIX's //
    for prefix in ("", *prefixes):
        prefix = prefix.rstrip("/")
        if prefix and not normal.startswith(prefix + "/"):
            continue
        if BLOCKED.match(normal[len(prefix) :]):
            return True
    return False
