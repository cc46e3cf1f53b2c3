"""Fixtures of the model API's tests: a holder serving a real ONNX graph of a trained forest."""

from __future__ import annotations

import time

import pytest

from iris_services.api.graph import GraphModel
from iris_services.api.model_holder import ModelHolder
from iris_services.common.alias import Champion
from iris_services.train import onnx_export, pipeline

IRIS = pipeline.load_dataset(0).x_train


class _Registry:
    """Version 3 of iris-classifier: a real forest's graph, no MLflow."""

    def __init__(self) -> None:
        graph = onnx_export.export(pipeline.train(5).model, IRIS)
        self.model = GraphModel(graph.onnx, graph.sha256)
        self.champ = Champion("iris-classifier", "3", "champion", 0.97, time.time(), None, "")

    def champion(self) -> Champion:
        return self.champ

    def load(self, champion: Champion) -> GraphModel:
        return self.model


@pytest.fixture(scope="module")
def registry() -> _Registry:
    return _Registry()


@pytest.fixture(scope="module")
def holder(registry: _Registry) -> ModelHolder:
    """Serving version 3 already."""
    held = ModelHolder(registry)
    assert held.refresh()
    return held


@pytest.fixture
def empty_holder(registry: _Registry) -> ModelHolder:
    """Nothing loaded yet: an app built around it sees version 3 arrive (``refresh()``)."""
    return ModelHolder(registry)
