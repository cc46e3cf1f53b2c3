"""MinIO's place in the end-to-end run: moto's S3 server (a real S3 API over HTTP), plus the
two health paths MinIO's probes use (``/minio/health/live`` and ``/minio/health/ready``,
https://min.io/docs/minio/linux/operations/monitoring/healthcheck-probe.html).

Run as ``python -m tests.targets.wire.s3_minio HOST PORT``.
"""

from __future__ import annotations

import sys
from typing import Any


def main(host: str, port: int) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import run_simple

    s3 = DomainDispatcherApplication(create_backend_app)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO", "").startswith("/minio/health/"):
            start_response("200 OK", [("Content-Length", "0")])
            return [b""]
        return s3(environ, start_response)

    print(f"S3 (moto) in MinIO's place on {host}:{port}", flush=True)
    run_simple(host, port, app, threaded=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
