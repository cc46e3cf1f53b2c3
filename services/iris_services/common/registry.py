"""The one place that configures the MLflow client for every service.

Trust decision (see README, "Security"): nothing in irisctl deserializes a model from the
registry. Loading the scikit-learn flavor runs code from the artifact: pickle and cloudpickle
by design, and skops too, because MLflow reads the skops trusted-types list from the model's
own ``MLmodel`` file, so a crafted model whitelists what it likes (the comment in
``_load_model_from_local_file``, ``mlflow/sklearn/__init__.py``, 3.17.2). After training only
the ONNX graph is read, and it is run by onnxruntime (``train/champion.py``). So
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` is not set here; note that MLflow's own default for it
is true (``mlflow/environment_variables.py``), so the control is that no loader is ever called.
``SKOPS_TRUSTED_TYPES`` only goes into the logged model's ``MLmodel`` file, for people who
choose to load it themselves (``mlflow models serve``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .settings import CommonSettings

if TYPE_CHECKING:
    from mlflow import MlflowClient

SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]


def configure(settings: CommonSettings) -> MlflowClient:
    """Bound the client's retries and timeouts, keep MLflow quiet, return a client."""
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(settings.mlflow_max_retries)
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(settings.mlflow_timeout_s)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    # Our JSON log handler, not MLflow's; no "View run at" prints in the middle of the logs.
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # No usage telemetry (README, "Privacy"); every target sets these too, this covers the rest.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return mlflow.MlflowClient(settings.tracking_uri, settings.tracking_uri)
