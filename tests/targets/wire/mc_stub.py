"""``mc`` (MinIO's client) for the setup Job in the kubelet stand-in, where moto's S3 server
stands in for MinIO (s3_minio.py).

What it proves and what it cannot: ``alias set`` and ``mb --ignore-existing`` act on the S3
stand-in for real (the bucket exists afterwards; an unreachable endpoint fails, so the script's
retry loop runs). moto has no MinIO admin API, so ``admin policy create``, ``admin user add``,
``admin policy attach`` and ``admin user info`` only check their arguments as mc's docs give
them (https://min.io/docs/minio/linux/reference/minio-mc-admin/mc-admin-policy-create.html,
…-attach.html, mc-admin-user-add.html), parse the policy file as JSON and append the call to
``$MC_CONFIG_DIR/admin.log`` for the test to read. That the policy really limits the user is
MinIO's to enforce and is not exercised here.

Run as ``python -m tests.targets.wire.mc_stub ARGS...``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def config_dir() -> Path:
    path = Path(os.environ.get("MC_CONFIG_DIR") or Path.home() / ".mc")
    path.mkdir(parents=True, exist_ok=True)
    return path


def s3(alias: str):  # type: ignore[no-untyped-def]
    import boto3

    found = json.loads((config_dir() / "aliases.json").read_text())[alias]
    return boto3.client(
        "s3",
        endpoint_url=found["url"],
        aws_access_key_id=found["accessKey"],
        aws_secret_access_key=found["secretKey"],
        region_name="us-east-1",
    )


def admin(args: list[str]) -> int:
    usage = {
        ("policy", "create"): 3,  # TARGET POLICYNAME POLICYPATH
        ("user", "add"): 3,  # TARGET ACCESSKEY SECRETKEY
        ("policy", "attach"): 4,  # TARGET POLICY --user USER
        ("user", "info"): 2,  # TARGET USERNAME
    }
    wanted = usage.get((args[0], args[1])) if len(args) >= 2 else None
    rest = args[2:]
    if wanted is None or len(rest) != wanted:
        print(f"mc: <ERROR> wrong arguments for admin {' '.join(args[:2])}", file=sys.stderr)
        return 1
    if args[:2] == ["policy", "attach"] and rest[2] != "--user":
        print("mc: <ERROR> exactly one --user or --group is required", file=sys.stderr)
        return 1
    if args[:2] == ["policy", "create"]:
        json.loads(Path(rest[2]).read_text())  # mc refuses a file that is not JSON
    with (config_dir() / "admin.log").open("a") as log:
        log.write(json.dumps(args) + "\n")
    if args[:2] == ["user", "info"]:
        print(f"AccessKey: {rest[1]}\nStatus: enabled\nPolicyName: iris-mlflow")
    return 0


def main(argv: list[str]) -> int:
    if argv[:2] == ["alias", "set"]:
        name, url, access, secret = argv[2:6]
        path = config_dir() / "aliases.json"
        aliases = json.loads(path.read_text()) if path.exists() else {}
        aliases[name] = {"url": url, "accessKey": access, "secretKey": secret}
        path.write_text(json.dumps(aliases))
        try:
            s3(name).list_buckets()  # mc checks the alias with a request too
        except Exception as exc:
            print(
                f"mc: <ERROR> Unable to initialize new alias from the provided credentials. {exc}"
            )
            return 1
        print(f"Added `{name}` successfully.")
        return 0
    if argv[:1] == ["mb"]:
        target = argv[-1]
        alias, bucket = target.split("/", 1)
        client = s3(alias)
        if bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            client.create_bucket(Bucket=bucket)
            print(f"Bucket created successfully `{target}`.")
        return 0
    if argv[:1] == ["admin"]:
        return admin(argv[1:])
    print(f"mc stand-in: not implemented: {argv}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
