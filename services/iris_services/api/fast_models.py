"""Faster evaluation of the models the API serves, used only where it agrees with scikit-learn.

scikit-learn's ``predict_proba`` on one row of a 100-tree forest costs ~4.9 ms on this machine,
almost all of it per-call machinery (validation, joblib dispatch, one call per tree), while the
trees themselves take ~0.27 ms (PERFORMANCE.md). ``FastForest`` keeps every tree's nodes in flat
arrays and walks all trees together, one level per step: a few vectorised numpy operations per
level (~40 us a row). ``FastLinear`` is a logistic regression's softmax in one matrix product
(~6 us against ~90 us). ``accelerate`` checks each against scikit-learn on probe rows before
using it; the tests compare them on the whole Iris data and random points.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class FastForest:
    """``predict_proba``/``predict`` of a fitted RandomForestClassifier, without sklearn's overhead.

    Nodes of tree ``t`` are stored at ``t * width + node`` in flat arrays, so each level of the
    walk is a handful of 1-D ``take`` calls over a trees-by-rows array of node ids.
    """

    def __init__(self, forest: Any) -> None:
        trees = [est.tree_ for est in forest.estimators_]
        width = max(t.node_count for t in trees)
        n_classes = int(forest.n_classes_)
        self.classes_ = forest.classes_
        self.n_features_in_ = int(forest.n_features_in_)
        size = len(trees) * width
        left = np.zeros(size, dtype=np.intp)
        right = np.zeros(size, dtype=np.intp)
        feature = np.zeros(size, dtype=np.intp)
        threshold = np.zeros(size, dtype=np.float64)
        value = np.zeros((size, n_classes), dtype=np.float64)
        for i, t in enumerate(trees):
            n, base = t.node_count, i * width
            ids = base + np.arange(n)
            leaf = t.children_left[:n] == -1
            # A leaf points to itself, so rows that reached one stay there for the next levels.
            left[ids] = np.where(leaf, ids, base + t.children_left[:n])
            right[ids] = np.where(leaf, ids, base + t.children_right[:n])
            feature[ids] = np.where(leaf, 0, t.feature[:n])
            threshold[ids] = t.threshold[:n]
            counts = t.value[:n, 0, :]
            value[ids] = counts / counts.sum(axis=1, keepdims=True)
        self._left, self._right, self._feature = left, right, feature
        self._threshold, self._value = threshold, value
        self._roots = (np.arange(len(trees)) * width)[:, None]
        self._depth = max(t.max_depth for t in trees)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (rows by classes): the mean of the trees' leaf distributions."""
        # scikit-learn compares float32 features with float64 thresholds: do the same.
        rows = np.asarray(x, dtype=np.float32).astype(np.float64)
        n_rows, n_features = rows.shape
        flat_rows = rows.ravel()
        row_base = (np.arange(n_rows) * n_features)[None, :]
        node = np.repeat(self._roots, n_rows, axis=1)
        for _ in range(self._depth):
            go_left = flat_rows.take(row_base + self._feature.take(node)) <= self._threshold.take(
                node
            )
            node = np.where(go_left, self._left.take(node), self._right.take(node))
        leaves = self._value.take(node.ravel(), axis=0)
        return leaves.reshape(node.shape[0], n_rows, -1).mean(axis=0)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(x).argmax(axis=1)]


class FastLinear:
    """``predict_proba`` of a multinomial LogisticRegression: softmax(x @ coef.T + intercept)."""

    def __init__(self, model: Any) -> None:
        self.classes_ = model.classes_
        self.n_features_in_ = int(model.n_features_in_)
        self._coef = np.ascontiguousarray(model.coef_.T, dtype=np.float64)
        self._intercept = np.asarray(model.intercept_, dtype=np.float64)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        scores = np.asarray(x, dtype=np.float64) @ self._coef + self._intercept
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        return scores

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(x).argmax(axis=1)]


# Rows the fast path must answer like scikit-learn before it is used: the Iris range and beyond.
_PROBE = np.array(
    [
        [5.1, 3.5, 1.4, 0.2],
        [6.4, 3.2, 4.5, 1.5],
        [6.3, 3.3, 6.0, 2.5],
        [4.3, 2.0, 1.0, 0.1],
        [7.9, 4.4, 6.9, 2.5],
        [5.8, 2.7, 5.1, 1.9],
        [0.0, 0.0, 0.0, 0.0],
        [20.0, 10.0, 15.0, 5.0],
    ]
)


def accelerate(model: Any) -> Any:
    """A faster equivalent of ``model`` when one exists and agrees with it, else ``model``."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    fast: Any = None
    if isinstance(model, RandomForestClassifier):
        fast = FastForest(model)
    elif isinstance(model, LogisticRegression) and len(model.classes_) > 2:
        fast = FastLinear(model)
    if fast is None:
        return model
    try:
        agrees = np.allclose(
            fast.predict_proba(_PROBE), model.predict_proba(_PROBE), rtol=1e-9, atol=1e-12
        )
    except (ValueError, IndexError):  # a model shape we do not handle (e.g. other features)
        agrees = False
    return fast if agrees else model
