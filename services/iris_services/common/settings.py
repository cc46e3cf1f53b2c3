"""One typed settings object per service, read from the environment in ``main()``.

The variable names are the same in every target: the local target's supervisord config and the
Kubernetes ConfigMap both set them.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .names import EXPERIMENT_NAME, MODEL_ALIAS, MODEL_NAME


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class CommonSettings(BaseSettings):
    """Settings every service reads."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    tracking_uri: str = Field("http://127.0.0.1:5000", validation_alias=_env("MLFLOW_TRACKING_URI"))
    model_name: str = Field(MODEL_NAME, validation_alias=_env("IRIS_MODEL_NAME"))
    model_alias: str = Field(MODEL_ALIAS, validation_alias=_env("IRIS_MODEL_ALIAS"))
    experiment_name: str = Field(EXPERIMENT_NAME, validation_alias=_env("IRIS_EXPERIMENT"))
    accuracy_threshold: float = Field(
        0.9, ge=0.0, le=1.0, validation_alias=_env("IRIS_ACCURACY_THRESHOLD")
    )
    # Bounds for every MLflow call: the client's defaults wait ~4 minutes on a dead server.
    mlflow_max_retries: int = Field(
        2, ge=0, validation_alias=_env("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    )
    mlflow_timeout_s: int = Field(10, ge=1, validation_alias=_env("MLFLOW_HTTP_REQUEST_TIMEOUT"))


class TrainerSettings(CommonSettings):
    """The trainer's settings."""

    seed: int | None = Field(None, validation_alias=_env("IRIS_SEED"))
    test_size: float = Field(0.2, gt=0.0, lt=1.0, validation_alias=_env("IRIS_TEST_SIZE"))
    # The held-out rows' split: fixed, so challenger and champion are scored on the same rows.
    split_seed: int = Field(0, ge=0, validation_alias=_env("IRIS_SPLIT_SEED"))
    # How much worse than the champion a challenger may score and still replace it; None: the
    # noise of a paired test on the held-out rows (train/gate.py paired_tolerance).
    promotion_tolerance: float | None = Field(
        None, ge=0.0, le=1.0, validation_alias=_env("IRIS_PROMOTION_TOLERANCE")
    )
    wait_for_mlflow_s: float = Field(
        60.0, ge=0, validation_alias=_env("IRIS_WAIT_FOR_MLFLOW_SECONDS")
    )
    lock_file: str | None = Field(None, validation_alias=_env("IRIS_TRAIN_LOCK"))
    # A RUNNING run older than this was orphaned by a crash: the next run marks it FAILED.
    orphan_after_s: float = Field(3600.0, ge=0, validation_alias=_env("IRIS_ORPHAN_RUN_SECONDS"))


class ApiSettings(CommonSettings):
    """The model API's settings."""

    # Loopback unless told otherwise (a pod sets HOST=0.0.0.0; irisctl's local target 127.0.0.1)
    host: str = Field("127.0.0.1", validation_alias=_env("HOST"))
    port: int = Field(8080, ge=1, le=65535, validation_alias=_env("PORT"))
    poll_s: float = Field(5.0, gt=0, validation_alias=_env("IRIS_POLL_SECONDS"))
    max_body_bytes: int = Field(1024 * 1024, gt=0, validation_alias=_env("IRIS_MAX_BODY_BYTES"))
    max_batch_rows: int = Field(10_000, gt=0, validation_alias=_env("IRIS_MAX_BATCH_ROWS"))
    workers: int = Field(1, ge=1, le=64, validation_alias=_env("IRIS_API_WORKERS"))
    startup_load_timeout_s: float = Field(
        30.0, ge=0, validation_alias=_env("IRIS_STARTUP_LOAD_TIMEOUT_SECONDS")
    )
    # Where workers share downloaded graphs (<sha256>.onnx); unset: a temp dir per API process.
    model_cache_dir: str | None = Field(None, validation_alias=_env("IRIS_MODEL_CACHE_DIR"))
    # Served-input statistics (api/drift.py): off only to measure what they cost (bench/run.py).
    drift_enabled: bool = Field(True, validation_alias=_env("IRIS_DRIFT_ENABLED"))
    # The sliding window: the last N rows the API answered (split evenly over the workers) that
    # are at most this old.
    drift_window_rows: int = Field(10_000, ge=1, validation_alias=_env("IRIS_DRIFT_WINDOW_ROWS"))
    drift_window_s: float = Field(3600.0, gt=0, validation_alias=_env("IRIS_DRIFT_WINDOW_SECONDS"))
    # IrisInputDrift fires above this PSI only once the window holds this many rows: windows of
    # 500 rows drawn from the Iris data itself stay below PSI 0.11 (tests/services/test_drift.py).
    drift_psi_threshold: float = Field(0.2, gt=0, validation_alias=_env("IRIS_DRIFT_PSI_THRESHOLD"))
    drift_min_rows: int = Field(500, ge=1, validation_alias=_env("IRIS_DRIFT_MIN_ROWS"))
    # Feedback (api/feedback.py): how long a prediction's id can be labelled; where the workers
    # share the labels not yet stored (unset: a temp dir per API process); how often they are
    # written to the store; and the labels an hour IrisLiveAccuracyLow waits for.
    feedback_max_age_s: float = Field(
        7 * 86400.0, gt=0, validation_alias=_env("IRIS_FEEDBACK_MAX_AGE_SECONDS")
    )
    feedback_spool_dir: str | None = Field(None, validation_alias=_env("IRIS_FEEDBACK_SPOOL_DIR"))
    feedback_flush_s: float = Field(5.0, gt=0, validation_alias=_env("IRIS_FEEDBACK_FLUSH_SECONDS"))
    live_accuracy_min_labels: int = Field(
        50, ge=1, validation_alias=_env("IRIS_LIVE_ACCURACY_MIN_LABELS")
    )


class MonitorSettings(CommonSettings):
    """The monitor's settings."""

    # Loopback unless told otherwise (a pod sets HOST=0.0.0.0; irisctl's local target 127.0.0.1)
    host: str = Field("127.0.0.1", validation_alias=_env("HOST"))
    port: int = Field(8001, ge=1, le=65535, validation_alias=_env("PORT"))
    poll_s: float = Field(15.0, gt=0, validation_alias=_env("IRIS_POLL_SECONDS"))
    stale_after_s: float = Field(
        36 * 3600.0, gt=0, validation_alias=_env("IRIS_STALE_AFTER_SECONDS")
    )
