"""``python -m iris_services.common.bucket``: create the artifact bucket in S3/MinIO if missing.

Run once by a Kubernetes Job before MLflow needs the bucket; idempotent, retried with backoff.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from . import logs

log = logging.getLogger("iris.bucket")


def ensure_bucket(endpoint: str, bucket: str, deadline_s: float = 120.0) -> None:
    """Create ``bucket`` unless it exists; retry while the endpoint is not up yet."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2}),
    )
    end = time.monotonic() + deadline_s
    delay = 1.0
    while True:
        try:
            existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
            if bucket not in existing:
                s3.create_bucket(Bucket=bucket)
                log.info("created bucket %s", bucket, extra={"event": "bucket.created"})
            else:
                log.info("bucket %s exists", bucket, extra={"event": "bucket.exists"})
            return
        except (BotoCoreError, ClientError) as exc:
            if time.monotonic() + delay > end:
                raise
            log.info("waiting for S3 at %s: %s", endpoint, exc)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def main() -> int:
    logs.setup()
    try:
        ensure_bucket(os.environ["S3_ENDPOINT_URL"], os.environ.get("S3_BUCKET", "mlflow"))
    except Exception as exc:
        log.error("could not create the bucket: %s", exc, extra={"event": "bucket.failed"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
