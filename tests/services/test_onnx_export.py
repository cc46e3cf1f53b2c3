"""The trainer's ONNX compilation: the graph answers like scikit-learn, or the model is refused.

Pure: no MLflow, no files; onnxruntime runs the graph in this process, as the API does.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_iris
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from iris_services.api.graph import GraphModel, served
from iris_services.train import onnx_export, pipeline

IRIS, TARGET = load_iris(return_X_y=True)


@pytest.mark.parametrize("seed", [1, 4, 7])
def test_the_trainers_forest_compiles_within_the_tolerance(seed):
    model = pipeline.train(seed).model
    graph = onnx_export.export(model, IRIS)
    assert graph.max_abs_diff <= onnx_export.TOLERANCE
    assert graph.rows_checked == len(IRIS) + onnx_export.RANDOM_POINTS
    # What the API runs answers the same, row by row, far outside the ranges too.
    graph_model = GraphModel(graph.onnx, graph.sha256)
    probes = np.vstack([IRIS, [[100, -100, 0, 50]]])
    np.testing.assert_allclose(
        served(graph_model.predict_proba(probes)), model.predict_proba(probes), atol=1e-6
    )


@pytest.mark.parametrize(
    "model",
    [
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
        GradientBoostingClassifier(n_estimators=20, random_state=0),
        LogisticRegression(max_iter=500),
    ],
    ids=["scaler+logistic", "gradient-boosting", "logistic"],
)
def test_other_sklearn_classifiers_compile_too(model):
    model.fit(IRIS, TARGET)
    graph = onnx_export.export(model, IRIS)
    assert graph.max_abs_diff <= onnx_export.TOLERANCE and len(graph.sha256) == 64


class Unknown(ClassifierMixin, BaseEstimator):
    """A classifier skl2onnx has no converter for."""

    def fit(self, x, y):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, x):
        return np.full((len(x), 3), 1 / 3)


def test_a_model_skl2onnx_cannot_convert_is_refused_with_the_reason():
    with pytest.raises(onnx_export.ExportFailed, match="cannot convert Unknown"):
        onnx_export.export(Unknown().fit(IRIS, TARGET), IRIS)


def test_probabilities_off_by_more_than_the_tolerance_are_refused():
    expected = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    nudge = np.array([[5e-7, -5e-7, 0], [0, 0, 0]])
    assert onnx_export.check_agreement(expected, expected + nudge) == pytest.approx(5e-7)
    with pytest.raises(onnx_export.ExportFailed, match=r"differ .* by 2e-06"):
        onnx_export.check_agreement(expected, expected + np.array([[0, 0, 0], [0, 2e-6, -2e-6]]))
    with pytest.raises(onnx_export.ExportFailed, match="shape"):
        onnx_export.check_agreement(expected, expected[:, :2])
    with pytest.raises(onnx_export.ExportFailed):
        onnx_export.check_agreement(expected, np.full_like(expected, np.nan))


def test_a_different_class_is_refused_but_an_exact_tie_may_go_either_way():
    tie = np.array([[0.5, 0.5, 0.0]])
    onnx_export.check_agreement(tie, np.array([[0.4999999, 0.5000001, 0.0]]))
    # Each probability within the tolerance, but the classes 1.6e-6 apart: a different answer.
    close = np.array([[0.5000008, 0.4999992, 0.0]])
    with pytest.raises(onnx_export.ExportFailed, match="predicts class 1 where scikit-learn"):
        onnx_export.check_agreement(close, np.array([[0.4999999, 0.5000001, 0.0]]))


def test_answers_that_do_not_sum_to_one_are_refused():
    """Like the graph's own answer for a row scikit-learn gives 1.0 (issue 23: 0.999999):
    within the tolerance of each probability, yet not a distribution."""
    expected = np.array([[1.0, 0.0, 0.0]])
    with pytest.raises(onnx_export.ExportFailed, match="sum to 1 only within 5e-07"):
        onnx_export.check_agreement(expected, np.array([[0.9999995, 0.0, 0.0]]))


@pytest.mark.parametrize("seed", [0, 1, 4, 7])
def test_served_answers_sum_to_one_and_match_sklearn_within_1e_6(seed):
    """Every Iris row and the trainer's random verification points, as the API answers them."""
    model = pipeline.train(seed).model
    probes = onnx_export.probe_rows(IRIS, seed)
    expected = model.predict_proba(probes)
    graph = onnx_export.export(model, IRIS, seed)
    answered = served(GraphModel(graph.onnx, graph.sha256).predict_proba(probes))
    assert np.abs(answered.sum(axis=1) - 1).max() <= 1e-9
    assert np.abs(answered - expected).max() <= 1e-6
    assert ((answered >= 0) & (answered <= 1)).all()
    # Both options measured: the graph's own float32 sums are what renormalising fixes.
    assert graph.max_abs_diff <= graph.raw_max_abs_diff


def test_probes_cover_every_reference_row_and_beyond_the_ranges():
    probes = onnx_export.probe_rows(IRIS, seed=0)
    np.testing.assert_array_equal(probes[: len(IRIS)], IRIS)
    assert (probes.min(axis=0) < IRIS.min(axis=0)).all()
    assert (probes.max(axis=0) > IRIS.max(axis=0)).all()


def test_the_served_graph_refuses_bytes_that_are_not_the_registered_digest():
    graph = onnx_export.export(LogisticRegression(max_iter=500).fit(IRIS, TARGET), IRIS)
    with pytest.raises(ValueError, match="digest"):
        GraphModel(graph.onnx, "0" * 64)
