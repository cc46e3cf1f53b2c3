"""Rows become answers here, for every path: the JSON contract's answer for a batch and for one
row (the hot path's, without arrays), and the probabilities every answer carries. Every answer
carries its prediction's ``id`` (``common/feedback_ids.py``), for ``POST /feedback``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..common.feedback_ids import Ids
from ..common.names import CLASS_NAMES
from .drift import DriftMonitor
from .graph import served
from .model_holder import Loaded


def scores(loaded: Loaded, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The graph takes float32; renormalised in float64 (``graph.served``), each row sums to 1,
    nothing outside [0, 1]. Returns the probabilities and each row's class index."""
    proba = served(loaded.predict_proba(rows.astype(np.float32)))
    return proba, proba.argmax(axis=1)


def answer(loaded: Loaded, rows: np.ndarray, drift: DriftMonitor, ids: Ids) -> list[dict[str, Any]]:
    """The answers to a batch, in order; the drift monitor notes the rows (and adds
    ``warnings`` to odd ones). The drift statistics compare the values as sent (float64)."""
    proba, best = scores(loaded, rows)
    made = ids.many(loaded.champion.version, rows, best)
    answers = [
        {
            "prediction": CLASS_NAMES[int(i)],
            "class_index": int(i),
            "probabilities": dict(zip(CLASS_NAMES, map(float, p), strict=True)),
            "id": ident,
        }
        for i, p, ident in zip(best, proba, made, strict=True)
    ]
    drift.observe(loaded.champion.version, rows, best, answers)
    return answers


def answer_one(
    loaded: Loaded, features: list[float], drift: DriftMonitor, ids: Ids
) -> dict[str, Any]:
    """``answer`` for one row, equal to it value for value, in plain floats: numpy's
    per-call cost is most of a one-row request's (bench/profile_predict.py).

    Equal because it is the same arithmetic: ``graph.served`` clips at 0, sums the row left to
    right (numpy adds fewer than 8 values in order) and divides in float64; argmax keeps the
    first of equal values, as ``max`` over the indices does.
    """
    graph_row = loaded.predict_proba(np.array([features], dtype=np.float32))[0].tolist()
    p = [v if v > 0.0 else 0.0 for v in graph_row]
    total = sum(p)
    p = [v / total for v in p] if total > 0 else [0.0] * len(p)
    best = max(range(len(p)), key=p.__getitem__)
    one = {
        "prediction": CLASS_NAMES[best],
        "class_index": best,
        "probabilities": dict(zip(CLASS_NAMES, p, strict=True)),
        "id": ids.one(loaded.champion.version, features, best),
    }
    drift.observe_one(loaded.champion.version, features, best, one)
    return one
