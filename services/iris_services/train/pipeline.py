"""The pure training pipeline: data, split, sampled hyperparameters, fit, evaluate. No I/O."""

from __future__ import annotations

import random
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


def load_dataset(seed: int, test_size: float = 0.2) -> Dataset:
    """Load Iris and hold out ``test_size`` of it, stratified by class, with a fixed seed."""
    iris = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(
        iris.data, iris.target, test_size=test_size, random_state=seed, stratify=iris.target
    )
    return Dataset(
        x_train, x_test, y_train, y_test, list(iris.feature_names), list(iris.target_names)
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


def train(seed: int, test_size: float = 0.2) -> TrainResult:
    """Run the whole pipeline for one seed."""
    data = load_dataset(seed, test_size)
    params = sample_params(seed)
    model = RandomForestClassifier(n_jobs=1, **params).fit(data.x_train, data.y_train)
    return TrainResult(model=model, params=params, evaluation=evaluate(model, data), dataset=data)


def is_promotable(accuracy: float, threshold: float, champion_accuracy: float | None) -> bool:
    """The gate: at least the threshold, and not worse than the current champion."""
    if accuracy < threshold:
        return False
    # A tie is "not worse"; the tolerance absorbs a champion accuracy read back from a tag.
    return champion_accuracy is None or accuracy >= champion_accuracy - 1e-9
