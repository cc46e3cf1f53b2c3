"""Which registered versions and alias moves our own trainer and CLI made: HMAC-SHA256 signatures.

MLflow has no authentication, and the graph's digest tag sits on the same writable server as the
graph, so a digest says what a version is, not who made it. The trainer signs what it registers
(model name, version, graph digest) and every alias move it or the CLI records, with a key
generated at ``irisctl up`` that the MLflow server never holds; the API, ``promote`` and
``rollback`` verify it.

HMAC, not Ed25519: the signers (the trainer, and the operator's CLI, which records alias moves)
and the verifiers (the API, the CLI) overlap, so a public key would keep the key only from the
API, whose compromise already decides what is served; and the API image stays stdlib-only here.
Standard library only: the model API imports this module.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

SIGNATURE_TAG = "iris.signature"  # on a model version: sign_version's value
MOVE_SIGNATURE_FIELD = "sig"  # in an alias-move record's JSON
KEY_FILE_ENV = "IRIS_SIGNING_KEY_FILE"  # where the services read the key (a file, 0600)
KEY_FILE_NAME = "signing.key"  # under IRISCTL_HOME (local target)
SECRET_KEY = "signing-key"  # its key in the Secret iris-credentials (Kubernetes targets)
_SCHEME = "hmac-sha256-v1"
_KEY_BYTES = 32


class SignatureError(Exception):
    """A version or record is unsigned, or not signed with this stack's key."""


def new_key() -> str:
    """A fresh key, as the hex text stored in the key file or the Secret."""
    return secrets.token_hex(_KEY_BYTES)


def write_key_file(path: Path) -> bool:
    """Create the key file (0600, whatever the umask) unless it exists; True when created.

    An existing file is kept, so versions signed before stay valid; its mode is reset to 0600.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        path.chmod(0o600)
        return False
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)  # O_CREAT's mode is masked by the umask; this is not
        f.write(new_key() + "\n")
    return True


def parse_key(text: str) -> bytes:
    """The key from its stored text; SignatureError when it is not one."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) < _KEY_BYTES:
        raise SignatureError(f"the signing key is not {_KEY_BYTES} bytes of hex")
    return key


def read_key_file(path: str | Path) -> bytes:
    """The key in ``path``; SignatureError (with the path) when it is missing or malformed."""
    try:
        return parse_key(Path(path).read_text())
    except OSError as exc:
        raise SignatureError(f"cannot read the signing key {path}: {exc.strerror}") from None


def key_from_env() -> bytes | None:
    """The key the environment names (``IRIS_SIGNING_KEY_FILE``), or None when none is named."""
    path = os.environ.get(KEY_FILE_ENV)
    return read_key_file(path) if path else None


def _mac(key: bytes, kind: str, fields: list[str]) -> str:
    message = "\n".join([_SCHEME, kind, *fields]).encode()
    return f"{_SCHEME}:{hmac.new(key, message, hashlib.sha256).hexdigest()}"


def sign_version(key: bytes, name: str, version: str, digest: str) -> str:
    """The signature tag of version ``version`` of ``name`` whose graph has sha256 ``digest``."""
    return _mac(key, "version", [name, version, digest])


def verify_version(
    key: bytes | None, name: str, version: str, digest: str, signature: str | None
) -> None:
    """SignatureError unless ``signature`` is this key's signature of (name, version, digest)."""
    if key is None:
        raise SignatureError("no signing key is configured, so no version can be trusted")
    if not signature:
        raise SignatureError(
            f"version {version} is not signed (registered before irisctl signed versions, or "
            "not by this stack's trainer)"
        )
    if not hmac.compare_digest(signature, sign_version(key, name, version, digest)):
        raise SignatureError(
            f"version {version}'s signature does not match: it was not registered by this "
            "stack's trainer, or its graph was changed"
        )


def _move_fields(name: str, record: dict[str, Any]) -> list[str]:
    body = {k: v for k, v in record.items() if k != MOVE_SIGNATURE_FIELD}
    return [name, json.dumps(body, sort_keys=True, separators=(",", ":"))]


def sign_move(key: bytes, name: str, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` (an alias move of model ``name``) with its signature field added."""
    return {**record, MOVE_SIGNATURE_FIELD: _mac(key, "alias_move", _move_fields(name, record))}


def move_is_signed(key: bytes, name: str, record: dict[str, Any]) -> bool:
    """Whether ``record`` carries this key's signature of its other fields."""
    signature = record.get(MOVE_SIGNATURE_FIELD)
    if not isinstance(signature, str):
        return False
    return hmac.compare_digest(signature, _mac(key, "alias_move", _move_fields(name, record)))
