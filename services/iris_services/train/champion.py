"""The serving alias: check a model before it serves, move the alias, keep its history.

Used by the trainer (the gate) and by ``irisctl promote`` / ``irisctl rollback``, so a model
passes the same smoke check of its ONNX graph whichever of them moves the alias.

MLflow keeps no history of an alias. Every move is recorded as one tag on the registered model,
``iris.alias_move.<unix ms>`` = JSON ``{"at", "alias", "from", "to", "reason", "by"}``, written
right after the alias moved (the alias is the truth; a lost tag loses one history line only).
Each version the alias points to carries ``scored_accuracy``/``scored_at`` (its last score on the
current held-out rows) and ``validated_at`` (the last time that score reached the threshold).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import gate

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from .pipeline import Dataset

log = logging.getLogger("iris.trainer")

MOVE_TAG_PREFIX = "iris.alias_move."
REASONS = ("gate", "manual", "rollback")


class CheckFailed(Exception):
    """The model could not be loaded, or it predicts nonsense."""


class Untrusted(CheckFailed):
    """The version is not signed with this stack's key: not made by our trainer."""


class Refused(Exception):
    """The alias was not moved; ``bad_input``: because of what was asked (exit 2, not 1)."""

    def __init__(self, message: str, hint: str = "", bad_input: bool = False) -> None:
        super().__init__(message)
        self.hint = hint
        self.bad_input = bad_input


@dataclass(frozen=True)
class Checked:
    """A model that loaded and predicted sane answers, and its accuracy on the held-out rows."""

    model_uri: str
    accuracy: float
    rows: int


@dataclass(frozen=True)
class AliasMove:
    """One move of the alias."""

    at: float  # unix seconds
    alias: str
    from_version: str | None
    to_version: str
    reason: str  # gate, manual, rollback
    by: str  # the run id (gate) or "irisctl"


@dataclass(frozen=True)
class Period:
    """A stretch of time one version was the champion."""

    version: str
    start: float
    end: float | None  # None: still the champion
    reason: str  # how it became champion
    ended_by: str | None  # the reason of the move that ended it


def check_graph(
    graph: bytes, data: Dataset, label: str, expected: np.ndarray | None = None
) -> Checked:
    """Run an ONNX graph with onnxruntime, as the model API does, and smoke-check it on the
    held-out rows.

    It must give one probability row summing to 1 per row over the known classes, and
    (``expected``: the in-memory model's probabilities) answer like the model that was trained.
    Nothing here unpickles: a graph is data that onnxruntime interprets, never Python objects.
    """
    from . import onnx_export

    try:
        proba = onnx_export.run_graph(graph, data.x_test)
    except onnx_export.ExportFailed as exc:
        raise CheckFailed(f"{label} does not predict: {exc}") from exc
    classes = len(data.class_names)
    if proba.shape != (len(data.y_test), classes) or not np.allclose(proba.sum(axis=1), 1.0):
        raise CheckFailed(f"{label} gives probabilities that are not one row per class")
    if expected is not None:
        try:
            onnx_export.check_agreement(expected, proba)
        except onnx_export.ExportFailed as exc:
            raise CheckFailed(f"{label} does not answer like the trained model: {exc}") from exc
    predicted = proba.argmax(axis=1)
    accuracy = float(np.mean(predicted == data.y_test))
    return Checked(label, accuracy, len(data.y_test))


def download_graph(client: MlflowClient, model_id: str) -> tuple[bytes, str]:
    """A logged model's ONNX graph and its digest tag, the graph checked against the digest."""
    import hashlib
    import tempfile

    import mlflow.artifacts

    from ..common.names import DIGEST_TAG, GRAPH_FILE

    try:
        logged = client.get_logged_model(model_id)
    except Exception as exc:
        raise CheckFailed(f"its logged model {model_id} cannot be read: {exc}") from exc
    digest = (logged.tags or {}).get(DIGEST_TAG)
    if not digest:
        raise CheckFailed(
            "it has no verified ONNX graph, so the model API cannot serve it (trained before "
            "irisctl compiled models, or its compilation failed: see the run's tags)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{logged.artifact_location}/{GRAPH_FILE}", dst_path=tmp
            )
            graph = Path(path).read_bytes()
        except Exception as exc:
            raise CheckFailed(f"its ONNX graph cannot be downloaded: {exc}") from exc
    if hashlib.sha256(graph).hexdigest() != digest:
        raise CheckFailed("its ONNX graph does not match the digest recorded when it was verified")
    return graph, digest


def model_id_of(mv: Any) -> str:
    """The logged model a registered version points to."""
    return getattr(mv, "model_id", None) or str(mv.source).removeprefix("models:/")


def check_version(
    client: MlflowClient, name: str, version: str, data: Dataset, key: bytes | None
) -> Checked:
    """A registered version is signed by our trainer (``key``: this stack's signing key), and
    its ONNX graph, what the model API serves, is there, matches the signed digest, and predicts
    sane answers on the held-out rows (its accuracy). ``Untrusted`` when it is not signed.

    The only way irisctl looks at a registered model after training: the scikit-learn flavor
    beside the graph is never loaded, since loading it runs whatever its pickle says
    (README, "Security").
    """
    from ..common import signing

    mv = client.get_model_version(name, version)
    graph, digest = download_graph(client, model_id_of(mv))
    try:
        signing.verify_version(
            key, name, version, digest, (mv.tags or {}).get(signing.SIGNATURE_TAG)
        )
    except signing.SignatureError as exc:
        raise Untrusted(str(exc)) from None
    return check_graph(graph, data, version_uri(name, version))


def sign_version(client: MlflowClient, name: str, version: str, digest: str, key: bytes) -> None:
    """Tag a version our trainer registered with its signature (README, "Security")."""
    from ..common import signing

    tag = signing.sign_version(key, name, version, digest)
    client.set_model_version_tag(name, version, signing.SIGNATURE_TAG, tag)


def version_uri(name: str, version: str) -> str:
    return f"models:/{name}/{version}"


def record_score(
    client: MlflowClient, name: str, version: str, accuracy: float, threshold: float
) -> bool:
    """Tag a version with its score on the current rows; re-validated when it reaches the
    threshold (True)."""
    now = repr(time.time())
    client.set_model_version_tag(name, version, "scored_accuracy", repr(accuracy))
    client.set_model_version_tag(name, version, "scored_at", now)
    if gate.meets_threshold(accuracy, threshold):
        client.set_model_version_tag(name, version, "validated_at", now)
        return True
    return False


def move_alias(
    client: MlflowClient,
    name: str,
    alias: str,
    version: str,
    reason: str,
    by: str,
    key: bytes,
) -> AliasMove:
    """Point ``alias`` at ``version`` and record the move, signed with ``key``, in the
    registered model's tags."""
    current = _current(client, name, alias)
    client.set_registered_model_alias(name, alias, version)
    move = AliasMove(time.time(), alias, current, version, reason, by)
    try:
        tag = f"{MOVE_TAG_PREFIX}{int(move.at * 1000)}"
        client.set_registered_model_tag(name, tag, _dump(move, name, key))
    except Exception as exc:  # the alias moved; only the history line is lost
        log.warning("alias moved to %s but its history was not recorded: %s", version, exc)
    return move


def _dump(move: AliasMove, name: str, key: bytes) -> str:
    from ..common import signing

    d = asdict(move)
    record = {"at": d["at"], "alias": d["alias"], "from": d["from_version"]}
    record |= {"to": d["to_version"], "reason": d["reason"], "by": d["by"]}
    return json.dumps(signing.sign_move(key, name, record))


def _current(client: MlflowClient, name: str, alias: str) -> str | None:
    from ..common.alias import champion_at

    champ = champion_at(client.tracking_uri, name, alias)
    return champ.version if champ else None


def parse_moves(
    tags: dict[str, str], alias: str, signed_by: tuple[str, bytes] | None = None
) -> list[AliasMove]:
    """The alias's moves from a registered model's tags, oldest first (bad entries skipped);
    ``signed_by`` (model name, key): only the moves signed with that key."""
    from ..common import signing

    moves = []
    for tag, value in tags.items():
        if not tag.startswith(MOVE_TAG_PREFIX):
            continue
        try:
            d = json.loads(value)
            if signed_by is not None and not signing.move_is_signed(signed_by[1], signed_by[0], d):
                continue
            move = AliasMove(
                float(d["at"]),
                str(d["alias"]),
                None if d.get("from") is None else str(d["from"]),
                str(d["to"]),
                str(d["reason"]),
                str(d.get("by", "")),
            )
        except (ValueError, KeyError, TypeError):
            continue
        if move.alias == alias:
            moves.append(move)
    return sorted(moves, key=lambda m: m.at)


def periods(moves: list[AliasMove]) -> list[Period]:
    """Champion periods from the moves, oldest first; the last one has no end."""
    out: list[Period] = []
    for move in moves:
        if out and out[-1].end is None:
            last = out[-1]
            out[-1] = Period(last.version, last.start, move.at, last.reason, move.reason)
        out.append(Period(move.to_version, move.at, None, move.reason, None))
    return out


def previous_champion(moves: list[AliasMove], current: str | None) -> str | None:
    """Where ``rollback`` goes: the champion before the current one's latest promotion.

    Rollback moves are skipped, so rolling back twice walks back two champions, not back and
    forth between the same two.
    """
    for move in reversed(moves):
        if move.to_version == current and move.reason != "rollback":
            return move.from_version
    return None


def history(
    client: MlflowClient, name: str, alias: str, key: bytes | None = None
) -> list[AliasMove]:
    """The recorded moves of ``alias`` (empty when the model does not exist yet); ``key``:
    only those signed with it."""
    from mlflow.exceptions import MlflowException

    try:
        rm: Any = client.get_registered_model(name)
    except MlflowException:
        return []
    return parse_moves(dict(rm.tags or {}), alias, None if key is None else (name, key))


def promote(
    client: MlflowClient,
    name: str,
    alias: str,
    version: str,
    data: Dataset,
    threshold: float,
    reason: str,
    key: bytes,
    force: bool = False,
) -> tuple[AliasMove, Checked]:
    """Check ``version`` like the trainer checks a new model, then move the alias to it.

    Refused (alias unmoved): an unknown version, one not signed with ``key`` (even with
    ``force``), one that fails the check, one below the threshold unless ``force``.
    """
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(name, version)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") not in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            raise
        raise Refused(
            f"{name} has no version {version!r}",
            "`irisctl history` lists the versions that were champion",
            bad_input=True,
        ) from None
    if _current(client, name, alias) == version:
        raise Refused(f"version {version} is already the {alias}; nothing moved")
    try:
        checked = check_version(client, name, version, data, key)
    except Untrusted as exc:
        raise Refused(
            f"version {version} is refused: {exc}",
            "only versions our trainer registered are promoted; `irisctl train --now` makes one",
        ) from None
    except CheckFailed as exc:
        raise Refused(f"version {version} failed the smoke check: {exc}") from None
    if not gate.meets_threshold(checked.accuracy, threshold) and not force:
        raise Refused(
            f"version {version} scores {checked.accuracy:.4f} on the held-out rows, below the "
            f"threshold {threshold}",
            "add --force to promote it anyway",
        )
    move = move_alias(client, name, alias, version, reason, "irisctl", key)
    record_score(client, name, version, checked.accuracy, threshold)
    return move, checked


def rollback(
    client: MlflowClient, name: str, alias: str, data: Dataset, threshold: float, key: bytes
) -> tuple[AliasMove, Checked]:
    """Move the alias back to the previous champion (same check as ``promote``, forced: it was
    good enough to serve before). Only moves signed with ``key`` count: anyone can write tags."""
    champ = _current(client, name, alias)
    target = previous_champion(history(client, name, alias, key), champ)
    if target is None:
        raise Refused(
            f"there is no previous champion to roll back to (current: "
            f"{'version ' + champ if champ else 'none'})",
            "`irisctl promote VERSION` moves it to any registered version",
        )
    return promote(client, name, alias, target, data, threshold, "rollback", key, force=True)
