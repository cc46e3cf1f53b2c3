"""Prediction ids: what ``POST /feedback`` needs to know about a prediction, signed.

Every prediction the API returns carries an id that holds the model version that answered, the
class it predicted, the four values it was asked about and when: so any worker of any replica,
and the trainer, can read a label's prediction back without a store of predictions, and a
restart invalidates nothing. The id is MACed (keyed BLAKE2s, 96-bit tag) with a key derived from
this stack's signing key (``common/signing.py``, generated at ``irisctl up``, 0600 or in the
Kubernetes Secret), so a forged or foreign id is "unknown", never a row to train on.

Layout, 60 bytes, URL-safe base64 without padding (80 characters): format (1), issued at in
unix seconds (4), model version (4), predicted class (1), the four values as sent (four float64),
a random nonce (6, so two equal predictions in one second get two ids), the tag (12).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

FORMAT = 1
_HEAD = struct.Struct("<BIIB4d")  # format, issued, version, class, four values
_NONCE = 6
_PAYLOAD = _HEAD.size + _NONCE  # 48
_TAG = 12
_RAW = _PAYLOAD + _TAG  # 60: a multiple of 3, so base64 has no padding
ID_CHARS = _RAW * 4 // 3  # 80
# A clock a little ahead of the issuer's (another replica's node) is not a forgery.
_FUTURE_SKEW_S = 300.0
_DERIVATION = b"iris feedback ids v1"
# numpy's view of _HEAD + nonce, for a batch's ids at once (packed: no alignment padding).
_ROW = np.dtype(
    [
        ("format", "u1"),
        ("issued", "<u4"),
        ("version", "<u4"),
        ("predicted", "u1"),
        ("values", "<f8", (4,)),
        ("nonce", "V6"),
    ]
)
assert _ROW.itemsize == _PAYLOAD, "the numpy layout must match _HEAD + nonce"


def derive_key(signing_key: bytes) -> bytes:
    """The ids' key: derived from the signing key, so a leaked id key signs no model."""
    return hmac.digest(signing_key, _DERIVATION, "sha256")


@dataclass(frozen=True)
class Issued:
    """What an id says about its prediction."""

    version: str
    issued_at: int  # unix seconds
    predicted: int  # class index
    values: tuple[float, float, float, float]


class Ids:
    """Makes and reads the ids of one stack (one key)."""

    def __init__(self, key: bytes, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        # Keyed BLAKE2s spends a block on the key: each tag starts from a copy of that state.
        # BLAKE2s, not 2b: a 48-byte payload is one 64-byte block (a batch's ids in ~0.5 µs each).
        self._keyed = hashlib.blake2s(key=key, digest_size=_TAG)

    def _tag(self, payload: bytes) -> bytes:
        h = self._keyed.copy()
        h.update(payload)
        return h.digest()

    def one(self, version: str, values: list[float], predicted: int) -> str:
        """The id of one prediction (the hot path: ~2 µs)."""
        payload = _HEAD.pack(FORMAT, int(self.clock()), int(version), predicted, *values)
        payload += os.urandom(_NONCE)
        return base64.urlsafe_b64encode(payload + self._tag(payload)).decode()

    def many(self, version: str, rows: np.ndarray, predicted: np.ndarray) -> list[str]:
        """The ids of a batch: ``rows`` (n rows of 4, float64 as sent) and their class indexes."""
        n = len(rows)
        packed = np.zeros(n, dtype=_ROW)
        packed["format"] = FORMAT
        packed["issued"] = int(self.clock())
        packed["version"] = int(version)
        packed["predicted"] = predicted
        packed["values"] = rows
        raw = np.empty((n, _RAW), dtype=np.uint8)
        raw[:, :_PAYLOAD] = packed.view(np.uint8).reshape(n, _PAYLOAD)
        raw[:, _HEAD.size : _PAYLOAD] = np.frombuffer(os.urandom(_NONCE * n), np.uint8).reshape(
            n, _NONCE
        )
        payloads = memoryview(raw[:, :_PAYLOAD].tobytes())
        tags, start = bytearray(), self._keyed.copy
        for i in range(0, len(payloads), _PAYLOAD):
            h = start()
            h.update(payloads[i : i + _PAYLOAD])
            tags += h.digest()
        raw[:, _PAYLOAD:] = np.frombuffer(tags, np.uint8).reshape(n, _TAG)
        text = base64.urlsafe_b64encode(raw.tobytes()).decode()
        return [text[i : i + ID_CHARS] for i in range(0, len(text), ID_CHARS)]

    def read(self, token: str, max_age_s: float | None) -> Issued | None:
        """What ``token`` says, or None when it is not one of this stack's ids (malformed,
        forged, another stack's) or older than ``max_age_s`` (None: any age, as the trainer
        reads labels already accepted)."""
        if not isinstance(token, str) or len(token) != ID_CHARS:
            return None
        try:
            raw = base64.urlsafe_b64decode(token.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            return None
        payload, tag = raw[:_PAYLOAD], raw[_PAYLOAD:]
        if len(raw) != _RAW or not hmac.compare_digest(tag, self._tag(payload)):
            return None
        fmt, issued, version, predicted, *values = _HEAD.unpack_from(payload)
        if fmt != FORMAT:
            return None
        if max_age_s is not None:
            age = self.clock() - issued
            if age > max_age_s or age < -_FUTURE_SKEW_S:
                return None
        return Issued(str(version), issued, predicted, (values[0], values[1], values[2], values[3]))


def key_from_env() -> bytes | None:
    """The ids' key from the stack's signing key (``IRIS_SIGNING_KEY_FILE``), or None when none
    is configured. SignatureError when the file is missing or malformed."""
    from .signing import key_from_env as signing_key

    key = signing_key()
    return derive_key(key) if key is not None else None
