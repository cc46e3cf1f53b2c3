"""The pure training pipeline: data, split, sampled hyperparameters, fit, evaluate. No I/O.

The held-out rows are fixed per dataset version (the split's seed is a setting, the data's
digest is recorded on every run), so the challenger and the champion are scored on the same
rows, which neither was trained on; a run's own seed only samples its hyperparameters.

The data is the Iris rows plus every labelled production row to date (``LabelledRow``: a
prediction's values and the label ``POST /feedback`` gave it). A production row goes to the
held-out side by a stable hash of its id: the held-out rows grow with production and stay the same
rows from one training to the next.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
from sklearn.model_selection import train_test_split


@dataclass
class Dataset:
    """A stratified train/test split of the Iris data that ships with scikit-learn."""

    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    feature_names: list[str]
    class_names: list[str]
    digest: str = ""  # of the whole data set: the dataset version the split belongs to
    split_seed: int = 0
    iris_rows: int = 0
    production_rows: int = 0  # labelled production rows, on both sides of the split
    production_test_rows: int = 0


@dataclass(frozen=True)
class LabelledRow:
    """A prediction the API made and the class a label said it was."""

    id: str
    values: tuple[float, float, float, float]
    label: int  # class index


@dataclass
class Evaluation:
    """Scores on the held-out rows only."""

    accuracy: float
    precision: dict[str, float]
    recall: dict[str, float]
    confusion: list[list[int]]


@dataclass
class TrainResult:
    """What one training produced."""

    model: RandomForestClassifier
    params: dict[str, Any]
    evaluation: Evaluation
    dataset: Dataset = field(repr=False)


# The default split of the held-out rows. Fixed, so every run of one dataset version is scored
# on the same rows; a different seed is a different (equally valid) 30-row sample.
SPLIT_SEED = 0


def data_digest(x: np.ndarray, y: np.ndarray) -> str:
    """A short content hash of features and labels: the dataset's version."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(x, dtype="<f8").tobytes())
    h.update(np.ascontiguousarray(y, dtype="<i8").tobytes())
    return h.hexdigest()[:16]


def held_out(row_id: str, test_size: float) -> bool:
    """Whether a production row is held out: a stable hash of its id, so the same row is on the
    same side in every training (and about ``test_size`` of them are)."""
    h = int.from_bytes(hashlib.sha256(row_id.encode()).digest()[:8], "big")
    return h < test_size * 2**64


def load_dataset(
    seed: int = SPLIT_SEED, test_size: float = 0.2, production: Sequence[LabelledRow] = ()
) -> Dataset:
    """Load Iris and hold out ``test_size`` of it, stratified by class; ``seed`` is the split's.
    ``production`` rows join each side by ``held_out``."""
    iris = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(
        iris.data, iris.target, test_size=test_size, random_state=seed, stratify=iris.target
    )
    digest = data_digest(iris.data, iris.target)  # unchanged for Iris alone
    rows = sorted(production, key=lambda r: r.id)
    tested = 0
    if rows:
        x = np.array([r.values for r in rows], dtype=np.float64)
        y = np.array([r.label for r in rows], dtype=np.int64)
        side = np.array([held_out(r.id, test_size) for r in rows])
        tested = int(side.sum())
        x_train, y_train = np.vstack([x_train, x[~side]]), np.concatenate([y_train, y[~side]])
        x_test, y_test = np.vstack([x_test, x[side]]), np.concatenate([y_test, y[side]])
        digest = data_digest(np.vstack([iris.data, x]), np.concatenate([iris.target, y]))
    return Dataset(
        x_train,
        x_test,
        y_train,
        y_test,
        list(iris.feature_names),
        list(iris.target_names),
        digest=digest,
        split_seed=seed,
        iris_rows=len(iris.target),
        production_rows=len(rows),
        production_test_rows=tested,
    )


def sample_params(seed: int) -> dict[str, Any]:
    """Sample a random forest's hyperparameters, as the seed project did, reproducibly."""
    rng = random.Random(seed)
    return {
        "n_estimators": rng.choice([25, 50, 100, 150]),
        "max_depth": rng.choice([2, 3, 4, 5, 8, None]),
        "min_samples_split": rng.choice([2, 4, 6]),
        "random_state": seed,
    }


def evaluate(model: RandomForestClassifier, data: Dataset) -> Evaluation:
    """Accuracy, per-class precision/recall and the confusion matrix on the test rows."""
    predicted = model.predict(data.x_test)
    labels = list(range(len(data.class_names)))
    precision, recall, _, _ = precision_recall_fscore_support(
        data.y_test, predicted, labels=labels, zero_division=0
    )
    return Evaluation(
        accuracy=float(accuracy_score(data.y_test, predicted)),
        precision={n: float(p) for n, p in zip(data.class_names, precision, strict=True)},
        recall={n: float(r) for n, r in zip(data.class_names, recall, strict=True)},
        confusion=confusion_matrix(data.y_test, predicted, labels=labels).tolist(),
    )


def train(
    seed: int,
    test_size: float = 0.2,
    split_seed: int = SPLIT_SEED,
    production: Sequence[LabelledRow] = (),
) -> TrainResult:
    """Run the whole pipeline: ``seed`` samples the hyperparameters; the split is fixed."""
    data = load_dataset(split_seed, test_size, production)
    params = sample_params(seed)
    model = RandomForestClassifier(n_jobs=1, **params).fit(data.x_train, data.y_train)
    return TrainResult(model=model, params=params, evaluation=evaluate(model, data), dataset=data)


def score(model: Any, data: Dataset) -> float:
    """Accuracy of any fitted classifier on the held-out rows."""
    return float(accuracy_score(data.y_test, model.predict(data.x_test)))
