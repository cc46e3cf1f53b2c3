"""The vectorised forest gives exactly scikit-learn's answers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from iris_services.api.fast_models import FastForest, accelerate
from iris_services.train import pipeline

IRIS = load_iris().data


@pytest.mark.parametrize("seed", range(1, 9))
def test_probabilities_equal_sklearn_on_iris_and_random_points(seed):
    model = pipeline.train(seed).model
    fast = FastForest(model)
    rng = np.random.default_rng(seed)
    probes = np.vstack([IRIS, rng.uniform(-5, 15, size=(500, 4)), [[1e30, -1e30, 0, 0]]])
    np.testing.assert_array_equal(fast.predict_proba(probes), model.predict_proba(probes))
    np.testing.assert_array_equal(fast.predict(probes), model.predict(probes))


def test_single_row_and_threshold_ties():
    model = pipeline.train(5).model
    fast = FastForest(model)
    thresholds = model.estimators_[0].tree_.threshold
    split = thresholds[thresholds != -2][0]
    row = np.array([[split, split, split, split]])  # exactly on a split: goes left in both
    np.testing.assert_array_equal(fast.predict_proba(row), model.predict_proba(row))


def test_accelerate_forests_and_multiclass_logistic_regression_only():
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(IRIS, load_iris().target)
    logistic = LogisticRegression(max_iter=500).fit(IRIS, load_iris().target)
    assert isinstance(accelerate(forest), FastForest)
    binary = LogisticRegression().fit(IRIS[:100], load_iris().target[:100])
    assert not isinstance(accelerate(logistic), type(logistic))
    assert accelerate(binary) is binary


def test_logistic_regression_is_accelerated_with_the_same_answers():
    iris = load_iris()
    model = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)
    fast = accelerate(model)
    assert fast is not model
    probes = np.vstack([IRIS, np.random.default_rng(0).uniform(-5, 15, size=(500, 4))])
    np.testing.assert_allclose(
        fast.predict_proba(probes), model.predict_proba(probes), rtol=1e-9, atol=1e-12
    )
    np.testing.assert_array_equal(fast.predict(probes), model.predict(probes))


def test_a_model_that_disagrees_is_not_replaced(monkeypatch):
    from iris_services.api import fast_models

    forest = pipeline.train(2).model
    monkeypatch.setattr(
        fast_models.FastForest, "predict_proba", lambda self, x: np.zeros((len(x), 3))
    )
    assert accelerate(forest) is forest
