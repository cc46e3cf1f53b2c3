"""The champion behind the serving alias: the one reader, over MLflow's REST API with httpx (no
mlflow import), for the model API, the monitor, the trainer and the CLI.

``GET /api/2.0/mlflow/registered-models/alias?name=…&alias=…`` (mlflow/server/handlers.py,
``_get_model_version_by_alias``) answers the model version, or an error whose ``error_code`` is
``RESOURCE_DOES_NOT_EXIST`` (no such model or alias; HTTP 404) or ``INVALID_PARAMETER_VALUE``
(HTTP 400, older servers for an unknown alias): both mean "no champion yet".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from .signing import SIGNATURE_TAG

NOT_FOUND = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"})


class RegistryError(Exception):
    """MLflow answered, but not with what the caller needs (the message says what)."""


@dataclass(frozen=True)
class Champion:
    """The registered version the serving alias points to."""

    name: str
    version: str
    alias: str
    accuracy: float | None
    registered_at: float  # unix seconds (MLflow stores milliseconds)
    run_id: str | None
    source: str
    # Continuous validation (train/champion.py): the last score on the current held-out rows,
    # and when that score last reached the threshold.
    scored_accuracy: float | None = None
    validated_at: float | None = None
    # The trainer's signature tag (common/signing.py); checked by whoever loads the version.
    signature: str | None = None


def read_champion(http: httpx.Client, name: str, alias: str) -> Champion | None:
    """The alias's target, or None when the model or the alias does not exist yet.

    ``http`` has MLflow's base URL; transport errors are httpx's, any other answer that is not
    the model version is a ``RegistryError``."""
    resp = http.get(
        "/api/2.0/mlflow/registered-models/alias", params={"name": name, "alias": alias}
    )
    if resp.status_code in (400, 404) and error_code(resp) in NOT_FOUND:
        return None
    if resp.status_code != 200:
        raise RegistryError(f"the alias lookup answered HTTP {resp.status_code}: {resp.text[:200]}")
    mv: dict[str, Any] = resp.json()["model_version"]
    tags = {t["key"]: t.get("value") for t in mv.get("tags", [])}
    return Champion(
        name=name,
        version=str(mv["version"]),
        alias=alias,
        accuracy=_float(tags.get("accuracy")),
        registered_at=int(mv.get("creation_timestamp", 0)) / 1000.0,
        run_id=mv.get("run_id") or None,
        source=mv.get("source", ""),
        scored_accuracy=_float(tags.get("scored_accuracy")),
        validated_at=_float(tags.get("validated_at")),
        signature=tags.get(SIGNATURE_TAG),
    )


def champion_at(
    tracking_uri: str, name: str, alias: str, timeout_s: float = 10.0, retries: int = 0
) -> Champion | None:
    """``read_champion`` on a client of its own; ``retries``: connection attempts retried."""
    transport = httpx.HTTPTransport(retries=retries)
    with httpx.Client(
        base_url=tracking_uri.rstrip("/"), timeout=timeout_s, transport=transport
    ) as http:
        return read_champion(http, name, alias)


def error_code(resp: httpx.Response) -> str:
    """MLflow's ``error_code`` in an error answer ("" when the body is not MLflow's JSON)."""
    try:
        return str(resp.json().get("error_code", ""))
    except (ValueError, AttributeError):
        return ""


def _float(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None
