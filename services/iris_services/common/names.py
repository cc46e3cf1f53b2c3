"""The names every part of the stack agrees on: the registered model, its serving alias, the
experiment, the classes and features, and where a logged model keeps its graph and profile.

Dependency-free, so the CLI (``irisctl``) and the services both import it: the one place to
rename any of them (the services still read ``IRIS_MODEL_NAME``/``IRIS_MODEL_ALIAS``/
``IRIS_EXPERIMENT`` as settings, defaulting to these).
"""

from __future__ import annotations

MODEL_NAME = "iris-classifier"
MODEL_ALIAS = "champion"
EXPERIMENT_NAME = "iris_classification"
# scikit-learn's load_iris().target_names; a model-behaviour test keeps them equal.
CLASS_NAMES: tuple[str, ...] = ("setosa", "versicolor", "virginica")
# The four measurements in the order /predict takes them (cm); names of the drift metrics' labels.
FEATURE_NAMES: tuple[str, ...] = ("sepal_length", "sepal_width", "petal_length", "petal_width")
# The trainer's reference profile of the training rows, stored in the logged model beside its
# ONNX graph (train/profile.py; api/drift.py reads it).
REFERENCE_PROFILE_ARTIFACT = "reference_profile.json"
# The verified ONNX graph inside a logged model, and the logged-model tag with its sha256 that the
# API checks a download against (written by train/onnx_export + publish, read by api/mlflow_rest).
GRAPH_FILE = "model.onnx"
DIGEST_TAG = "iris.onnx.sha256"
# Labelled production rows (api/feedback.py writes them, the trainer reads them): batches of
# JSON lines under this path of MLflow's proxied artifact store, then the registered model's name,
# then one directory per UTC day.
FEEDBACK_ARTIFACT_DIR = "feedback"
