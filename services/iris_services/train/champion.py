"""The serving alias: check a model before it serves, move the alias, keep its history.

Used by the trainer (the gate) and by ``irisctl promote`` / ``irisctl rollback``, so a model
passes the same load and smoke check whichever of them moves the alias.

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

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from .pipeline import Dataset

log = logging.getLogger("iris.trainer")

MOVE_TAG_PREFIX = "iris.alias_move."
REASONS = ("gate", "manual", "rollback")


class CheckFailed(Exception):
    """The model could not be loaded, or it predicts nonsense."""


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


def load_and_check(model_uri: str, data: Dataset, expected: np.ndarray | None = None) -> Checked:
    """Load a logged or registered model and smoke-check it on the held-out rows.

    It must load, give one known class and one probability row summing to 1 per row, and
    (``expected``) predict exactly what the model in memory did. The one place to extend when a
    model gains another form (e.g. a converted copy that must agree with it).
    """
    import mlflow.sklearn

    try:
        model: Any = mlflow.sklearn.load_model(model_uri)
        predicted = np.asarray(model.predict(data.x_test))
        proba = np.asarray(model.predict_proba(data.x_test))
    except Exception as exc:
        raise CheckFailed(f"{model_uri} does not load or predict: {exc}") from exc
    classes = len(data.class_names)
    if predicted.shape != (len(data.y_test),) or not np.isin(predicted, range(classes)).all():
        raise CheckFailed(f"{model_uri} predicts classes outside 0..{classes - 1}")
    if proba.shape != (len(data.y_test), classes) or not np.allclose(proba.sum(axis=1), 1.0):
        raise CheckFailed(f"{model_uri} gives probabilities that are not one row per class")
    if expected is not None and not np.array_equal(predicted, expected):
        raise CheckFailed(f"the model logged at {model_uri} predicts differently once loaded")
    accuracy = float(np.mean(predicted == data.y_test))
    return Checked(model_uri, accuracy, len(data.y_test))


def check_graph(client: MlflowClient, name: str, version: str, data: Dataset) -> None:
    """The version's ONNX graph, what the model API serves, is there, matches its digest and
    answers like the scikit-learn model on the held-out rows (as the trainer verified it)."""
    import hashlib
    import tempfile

    import mlflow.artifacts
    import mlflow.sklearn

    from ..common.settings import DIGEST_TAG, GRAPH_FILE
    from . import onnx_export

    mv = client.get_model_version(name, version)
    model_id = getattr(mv, "model_id", None) or str(mv.source).removeprefix("models:/")
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
    model: Any = mlflow.sklearn.load_model(version_uri(name, version))
    try:
        expected = np.asarray(model.predict_proba(data.x_test), dtype=np.float64)
        onnx_export.check_agreement(expected, onnx_export.run_graph(graph, data.x_test))
    except onnx_export.ExportFailed as exc:
        raise CheckFailed(f"its ONNX graph does not answer like the model: {exc}") from exc


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
    if accuracy + 1e-9 >= threshold:
        client.set_model_version_tag(name, version, "validated_at", now)
        return True
    return False


def move_alias(
    client: MlflowClient, name: str, alias: str, version: str, reason: str, by: str
) -> AliasMove:
    """Point ``alias`` at ``version`` and record the move in the registered model's tags."""
    current = _current(client, name, alias)
    client.set_registered_model_alias(name, alias, version)
    move = AliasMove(time.time(), alias, current, version, reason, by)
    try:
        key = f"{MOVE_TAG_PREFIX}{int(move.at * 1000)}"
        client.set_registered_model_tag(name, key, _dump(move))
    except Exception as exc:  # the alias moved; only the history line is lost
        log.warning("alias moved to %s but its history was not recorded: %s", version, exc)
    return move


def _dump(move: AliasMove) -> str:
    d = asdict(move)
    return json.dumps(
        {"at": d["at"], "alias": d["alias"], "from": d["from_version"], "to": d["to_version"]}
        | {"reason": d["reason"], "by": d["by"]}
    )


def _current(client: MlflowClient, name: str, alias: str) -> str | None:
    from ..common.registry import get_champion

    champ = get_champion(client, name, alias)
    return champ.version if champ else None


def parse_moves(tags: dict[str, str], alias: str) -> list[AliasMove]:
    """The alias's moves from a registered model's tags, oldest first (bad entries skipped)."""
    moves = []
    for key, value in tags.items():
        if not key.startswith(MOVE_TAG_PREFIX):
            continue
        try:
            d = json.loads(value)
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


def history(client: MlflowClient, name: str, alias: str) -> list[AliasMove]:
    """The recorded moves of ``alias`` (empty when the model does not exist yet)."""
    from mlflow.exceptions import MlflowException

    try:
        rm: Any = client.get_registered_model(name)
    except MlflowException:
        return []
    return parse_moves(dict(rm.tags or {}), alias)


def promote(
    client: MlflowClient,
    name: str,
    alias: str,
    version: str,
    data: Dataset,
    threshold: float,
    reason: str,
    force: bool = False,
) -> tuple[AliasMove, Checked]:
    """Check ``version`` like the trainer checks a new model, then move the alias to it.

    Refused (alias unmoved): an unknown version, one that fails the check, one below the
    threshold unless ``force``.
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
        checked = load_and_check(version_uri(name, version), data)
        check_graph(client, name, version, data)
    except CheckFailed as exc:
        raise Refused(f"version {version} failed the smoke check: {exc}") from None
    if checked.accuracy + 1e-9 < threshold and not force:
        raise Refused(
            f"version {version} scores {checked.accuracy:.4f} on the held-out rows, below the "
            f"threshold {threshold}",
            "add --force to promote it anyway",
        )
    move = move_alias(client, name, alias, version, reason, "irisctl")
    record_score(client, name, version, checked.accuracy, threshold)
    return move, checked


def rollback(
    client: MlflowClient, name: str, alias: str, data: Dataset, threshold: float
) -> tuple[AliasMove, Checked]:
    """Move the alias back to the previous champion (same check as ``promote``, forced: it was
    good enough to serve before)."""
    champ = _current(client, name, alias)
    target = previous_champion(history(client, name, alias), champ)
    if target is None:
        raise Refused(
            f"there is no previous champion to roll back to (current: "
            f"{'version ' + champ if champ else 'none'})",
            "`irisctl promote VERSION` moves it to any registered version",
        )
    return promote(client, name, alias, target, data, threshold, "rollback", force=True)
