"""The trainer's MLflow side: log the run, gate, register and move the alias.

Order matters (RELIABILITY.md C3/C4): log the model, load it back and smoke-predict, register,
then move the alias. A crash at any step leaves no broken champion: serving follows the alias,
never "the latest version".
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..common import registry
from ..common.settings import TrainerSettings
from ..common.wait import wait_for_http
from . import pipeline

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger("iris.trainer")


class TrainingFailed(Exception):
    """The run could not be completed (MLflow unreachable, data or artifact error)."""


@dataclass
class Summary:
    """The one-line outcome of a training run (logged as event ``training.summary``)."""

    run_id: str
    accuracy: float
    threshold: float
    promoted: bool
    reason: str
    version: str | None
    champion_version: str | None
    champion_accuracy: float | None
    seed: int


def checkpoint(stage: str) -> None:
    """Mark a stage of the run in the log; tests replace it to inject crashes between stages."""
    log.info("stage %s", stage, extra={"stage": stage})


def run(settings: TrainerSettings) -> Summary:
    """Train once, log everything to MLflow, and promote the model if it passes the gate."""
    if not wait_for_http(settings.tracking_uri.rstrip("/") + "/health", settings.wait_for_mlflow_s):
        raise TrainingFailed(
            f"MLflow at {settings.tracking_uri} did not answer within "
            f"{settings.wait_for_mlflow_s:.0f}s"
        )
    client = registry.configure(settings)
    import mlflow

    experiment = mlflow.set_experiment(settings.experiment_name)
    _fail_orphaned_runs(client, experiment.experiment_id, settings.orphan_after_s)
    champion = registry.get_champion(client, settings.model_name, settings.model_alias)
    seed = settings.seed if settings.seed is not None else secrets.randbelow(2**31 - 1)

    active = mlflow.start_run(experiment_id=experiment.experiment_id, tags={"iris.trainer": "1"})
    run_id = active.info.run_id
    try:
        # Everything from here on happens inside the run: any failure ends it FAILED.
        checkpoint("run_started")
        mlflow.log_param("seed", seed)
        result = pipeline.train(seed, settings.test_size)
        accuracy = result.evaluation.accuracy
        promote, reason = _gate(accuracy, settings.accuracy_threshold, champion)
        _log_run(result, settings)
        model_uri, model_id = _log_model(result)
        checkpoint("model_logged")
        _smoke_test(model_uri, result)
        checkpoint("model_verified")
        version = None
        if promote:
            version = _register_and_promote(client, settings, model_uri, run_id, model_id, accuracy)
            mlflow.set_tag("registered_version", version)
        mlflow.set_tags({"gate": "promoted" if promote else "rejected", "gate.reason": reason})
        _log_accuracy_plot(experiment.experiment_id)
    except BaseException:
        _end_failed(client, run_id)
        raise
    mlflow.end_run("FINISHED")

    now = registry.get_champion(client, settings.model_name, settings.model_alias)
    return Summary(
        run_id=run_id,
        accuracy=accuracy,
        threshold=settings.accuracy_threshold,
        promoted=promote,
        reason=reason,
        version=version,
        champion_version=now.version if now else None,
        champion_accuracy=now.accuracy if now else None,
        seed=seed,
    )


def _end_failed(client: MlflowClient, run_id: str, attempts: int = 3) -> None:
    """Mark the run FAILED, retrying on a fresh connection: the request that failed (an
    artifact upload the server rejected mid-body) can leave the pooled connection reset."""
    import mlflow

    for attempt in range(attempts):
        try:
            if attempt == 0 and mlflow.active_run() is not None:
                mlflow.end_run("FAILED")
            else:
                client.set_terminated(run_id, "FAILED")
            return
        except Exception as exc:
            log.warning("could not mark run %s FAILED (%s); retrying", run_id, exc)
            time.sleep(1.0)
    log.warning("run %s stays RUNNING; the next training marks it FAILED", run_id)


def _gate(
    accuracy: float, threshold: float, champion: registry.Champion | None
) -> tuple[bool, str]:
    """Whether to promote, and why (in words for the summary and the run's tags)."""
    champion_accuracy = champion.accuracy if champion else None
    if pipeline.is_promotable(accuracy, threshold, champion_accuracy):
        return True, "passed the gate"
    if accuracy < threshold:
        return False, f"accuracy {accuracy:.3f} is below the threshold {threshold:g}"
    version = champion.version if champion else "?"
    # Rounded for people; the run's metric and the summary's fields keep full precision.
    theirs = f"{champion_accuracy:.3f}" if champion_accuracy is not None else "?"
    return False, f"accuracy {accuracy:.3f} is worse than champion v{version} ({theirs})"


def _log_run(result: pipeline.TrainResult, settings: TrainerSettings) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    ev = result.evaluation
    mlflow.log_params(
        {
            **result.params,
            "test_size": settings.test_size,
            "accuracy_threshold": settings.accuracy_threshold,
            "model_type": "RandomForestClassifier",
            "train_rows": len(result.dataset.y_train),
            "test_rows": len(result.dataset.y_test),
        }
    )
    metrics = {"accuracy": ev.accuracy}
    metrics.update({f"precision_{k}": v for k, v in ev.precision.items()})
    metrics.update({f"recall_{k}": v for k, v in ev.recall.items()})
    mlflow.log_metrics(metrics)

    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(ev.confusion, cmap="Blues")
    names = result.dataset.class_names
    ax.set_xticks(range(len(names)), names, rotation=30)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i, row in enumerate(ev.confusion):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center")
    ax.set_title(f"confusion matrix (accuracy {ev.accuracy:.3f})")
    fig.tight_layout()
    mlflow.log_figure(fig, "confusion_matrix.png")
    plt.close(fig)


def _log_model(result: pipeline.TrainResult) -> tuple[str, str | None]:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    x = result.dataset.x_test
    signature = infer_signature(x, result.model.predict_proba(x))
    info = mlflow.sklearn.log_model(
        result.model,
        name="model",
        signature=signature,
        input_example=x[:2],
        skops_trusted_types=registry.SKOPS_TRUSTED_TYPES,
    )
    return info.model_uri, getattr(info, "model_id", None)


def _smoke_test(model_uri: str, result: pipeline.TrainResult) -> None:
    """Load the logged model back and check it predicts exactly what the trained one did."""
    import mlflow.sklearn

    loaded: Any = mlflow.sklearn.load_model(model_uri)
    x = result.dataset.x_test
    if not np.array_equal(loaded.predict(x), result.model.predict(x)):
        raise TrainingFailed(f"the model logged at {model_uri} predicts differently once loaded")


def _register_and_promote(
    client: MlflowClient,
    settings: TrainerSettings,
    model_uri: str,
    run_id: str,
    model_id: str | None,
    accuracy: float,
) -> str:
    from mlflow.exceptions import MlflowException

    name = settings.model_name
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
            raise
    checkpoint("registering")
    mv = client.create_model_version(
        name,
        source=model_uri,
        run_id=run_id,
        model_id=model_id,
        tags={"accuracy": repr(accuracy)},
        await_creation_for=60,
    )
    try:
        checkpoint("registered")
        client.set_registered_model_alias(name, settings.model_alias, str(mv.version))
    except BaseException:
        # Leave no registered-but-never-promoted version behind when we still can.
        try:
            client.delete_model_version(name, str(mv.version))
        except Exception:  # the server may be the thing that failed
            log.warning("could not remove version %s after a failed promotion", mv.version)
        raise
    checkpoint("promoted")
    return str(mv.version)


def _log_accuracy_plot(experiment_id: str) -> None:
    """Log the accuracy of every finished or current run, over time, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    runs: Any = mlflow.search_runs(
        [experiment_id], order_by=["attributes.start_time ASC"], max_results=1000
    )
    if "metrics.accuracy" not in runs:
        return
    runs = runs.dropna(subset=["metrics.accuracy"])
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(runs["start_time"], runs["metrics.accuracy"], marker="o")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy over time")
    fig.autofmt_xdate()
    fig.tight_layout()
    mlflow.log_figure(fig, "accuracy_over_time.png")
    plt.close(fig)


def _fail_orphaned_runs(client: MlflowClient, experiment_id: str, older_than_s: float) -> None:
    """Mark runs left RUNNING by a crashed trainer as FAILED (RELIABILITY.md C3)."""
    cutoff_ms = int((time.time() - older_than_s) * 1000)
    for orphan in client.search_runs(
        [experiment_id],
        filter_string=f"attributes.status = 'RUNNING' and tags.`iris.trainer` = '1' "
        f"and attributes.start_time < {cutoff_ms}",
        max_results=100,
    ):
        client.set_terminated(orphan.info.run_id, status="FAILED")
        log.warning("marked orphaned run %s FAILED", orphan.info.run_id)


def summary_dict(summary: Summary) -> dict[str, Any]:
    """The summary as plain data for the log line."""
    return asdict(summary)
