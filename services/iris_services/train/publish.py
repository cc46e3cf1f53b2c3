"""The trainer's MLflow side: log the run, gate, register and move the alias.

Order matters (RELIABILITY.md C3/C4): log the model, store its ONNX graph, download the graph
back and smoke-predict it, register, then move the alias. A crash at any step leaves no broken
champion: serving follows the alias, never "the latest version".
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np

from ..common import alias, registry
from ..common.names import (
    CLASS_NAMES,
    DIGEST_TAG,
    FEATURE_NAMES,
    FEEDBACK_ARTIFACT_DIR,
    GRAPH_FILE,
    REFERENCE_PROFILE_ARTIFACT,
)
from ..common.settings import TrainerSettings
from ..common.wait import wait_for_http
from . import champion as champion_mod
from . import gate, onnx_export, pipeline, profile

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
    # The champion's score on this run's held-out rows (None: there was none) and whether it
    # was re-validated (None: it was replaced, or there was none).
    scored_champion_accuracy: float | None = None
    champion_validated: bool | None = None
    tolerance: float | None = None
    # The data: Iris rows and labelled production rows (README, "Closing the loop").
    iris_rows: int | None = None
    production_rows: int | None = None


def checkpoint(stage: str) -> None:
    """Mark a stage of the run in the log; tests replace it to inject crashes between stages."""
    log.info("stage %s", stage, extra={"stage": stage})


def run(settings: TrainerSettings) -> Summary:
    """Train once, log everything to MLflow, and promote the model if it passes the gate;
    otherwise re-score the champion on the same rows (continuous validation)."""
    if not wait_for_http(settings.tracking_uri.rstrip("/") + "/health", settings.wait_for_mlflow_s):
        raise TrainingFailed(
            f"MLflow at {settings.tracking_uri} did not answer within "
            f"{settings.wait_for_mlflow_s:.0f}s"
        )
    key = _signing_key()
    client = registry.configure(settings)
    import mlflow

    experiment = mlflow.set_experiment(settings.experiment_name)
    _set_experiment_kind(client, experiment)
    _fail_orphaned_runs(client, experiment.experiment_id, settings.orphan_after_s)
    champion = _champion(settings)
    seed = settings.seed if settings.seed is not None else secrets.randbelow(2**31 - 1)

    active = mlflow.start_run(experiment_id=experiment.experiment_id, tags={"iris.trainer": "1"})
    run_id = active.info.run_id
    validated = None
    try:
        # Everything from here on happens inside the run: any failure ends it FAILED.
        checkpoint("run_started")
        mlflow.log_param("seed", seed)
        production = production_rows(settings, key)
        result = pipeline.train(seed, settings.test_size, settings.split_seed, production)
        accuracy = result.evaluation.accuracy
        tolerance = settings.promotion_tolerance
        if tolerance is None:
            tolerance = gate.paired_tolerance(len(result.dataset.y_test))
        champion_accuracy = _score_champion(client, champion, result.dataset, key)
        promote, reason = gate.decide(
            accuracy,
            settings.accuracy_threshold,
            champion.version if champion is not None else None,
            champion_accuracy,
            tolerance,
            len(result.dataset.y_test),
            paired=settings.promotion_tolerance is None,
        )
        _log_run(result, settings, tolerance)
        _log_dataset(result.dataset, settings.model_name)
        if champion_accuracy is not None:
            mlflow.log_metric("champion_accuracy", champion_accuracy)
        model_uri, model_id = _log_model(result)
        _store_profile(result.dataset, model_id)
        checkpoint("model_logged")
        promote, reason, digest = _store_graph(result, model_id, promote, reason)
        if promote:
            _smoke_test(client, model_id, result)
        checkpoint("model_verified")
        version = None
        if promote:
            version = _register_and_promote(
                client,
                settings,
                (model_uri, run_id, model_id),
                result.dataset,
                accuracy,
                (str(digest), key),
            )
            mlflow.set_tag("registered_version", version)
        elif champion is not None and champion_accuracy is not None:
            validated = champion_mod.record_score(
                client,
                settings.model_name,
                champion.version,
                champion_accuracy,
                settings.accuracy_threshold,
            )
            mlflow.set_tag("champion.validated", "true" if validated else "false")
        mlflow.set_tags({"gate": "promoted" if promote else "rejected", "gate.reason": reason})
        _log_accuracy_plot(experiment.experiment_id)
    except BaseException:
        _end_failed(client, run_id)
        raise
    mlflow.end_run("FINISHED")

    now = _champion(settings)
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
        scored_champion_accuracy=champion_accuracy,
        champion_validated=validated,
        tolerance=tolerance,
        iris_rows=result.dataset.iris_rows,
        production_rows=result.dataset.production_rows,
    )


# MLflow's marker of an experiment's kind; the value is what its UI calls "Machine learning"
# (ExperimentKind.CUSTOM_MODEL_DEVELOPMENT in mlflow/server/js). MLflow 3.17's UI itself picks
# GenAI or model training per browser and ignores it, so `irisctl up` also prints a link that
# asks for model training (README, "Training, registry and the gate").
KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def _set_experiment_kind(client: MlflowClient, experiment: Any) -> None:
    if (experiment.tags or {}).get(KIND_TAG) != EXPERIMENT_KIND:
        client.set_experiment_tag(experiment.experiment_id, KIND_TAG, EXPERIMENT_KIND)


def _signing_key() -> bytes:
    """This stack's signing key (README, "Security"): without it nothing we register could be
    served, so the run fails before it starts."""
    from ..common import signing

    try:
        key = signing.key_from_env()
    except signing.SignatureError as exc:
        raise TrainingFailed(str(exc)) from None
    if key is None:
        raise TrainingFailed(
            f"no signing key: {signing.KEY_FILE_ENV} is not set (`irisctl up` creates the key)"
        )
    return key


def _score_champion(
    client: MlflowClient,
    champion: alias.Champion | None,
    data: pipeline.Dataset,
    key: bytes,
) -> float | None:
    """The champion's accuracy on this run's held-out rows, from its ONNX graph run with
    onnxruntime (never by unpickling it); None when there is no champion.

    A champion that is not signed with ``key`` (not ours, or registered before irisctl signed
    versions) or whose graph does not load scores 0: any challenger over the threshold
    replaces it.
    """
    if champion is None:
        return None
    try:
        checked = champion_mod.check_version(client, champion.name, champion.version, data, key)
    except champion_mod.CheckFailed as exc:
        log.warning("champion v%s failed its check, scoring it 0: %s", champion.version, exc)
        return 0.0
    return checked.accuracy


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


def _log_run(result: pipeline.TrainResult, settings: TrainerSettings, tolerance: float) -> None:
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
            # The held-out rows' identity: the same digest and split seed, the same rows.
            "data_digest": result.dataset.digest,
            "split_seed": result.dataset.split_seed,
            # Where the rows came from (README, "Closing the loop").
            "iris_rows": result.dataset.iris_rows,
            "production_rows": result.dataset.production_rows,
            "production_test_rows": result.dataset.production_test_rows,
            "promotion_tolerance": round(tolerance, 6),
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


def _log_dataset(data: pipeline.Dataset, model_name: str) -> None:
    """The training data as an MLflow dataset input: name, digest, source and schema, and its
    row counts by origin as the input's tags."""
    import mlflow
    import pandas as pd
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.data.pandas_dataset import from_pandas

    x = np.concatenate([data.x_train, data.x_test])
    y = np.concatenate([data.y_train, data.y_test])
    frame = pd.DataFrame(x, columns=data.feature_names)
    frame["species"] = [data.class_names[i] for i in y]
    frame["split"] = ["train"] * len(data.y_train) + ["test"] * len(data.y_test)
    name = "iris+production" if data.production_rows else "iris"
    dataset = from_pandas(
        frame,
        source=HTTPDatasetSource(DATA_SOURCE),
        name=f"{name}@{data.digest}",
        targets="species",
        digest=data.digest,
    )
    tags = {"iris_rows": str(data.iris_rows), "production_rows": str(data.production_rows)}
    if data.production_rows:
        tags["production_source"] = f"mlflow-artifacts:/{FEEDBACK_ARTIFACT_DIR}/{model_name}"
    mlflow.log_input(dataset, context="training", tags=tags)


def production_rows(settings: TrainerSettings, key: bytes) -> list[pipeline.LabelledRow]:
    """Every labelled production row to date, from the feedback store: each id's first label,
    read back through the id (its values and the version's prediction are in it, signed; an id
    this stack's key did not sign is skipped)."""
    from ..common.feedback_ids import Ids, derive_key
    from ..common.feedback_store import FeedbackStore, StoreError

    ids = Ids(derive_key(key))
    first: dict[str, tuple[float, str]] = {}
    store = FeedbackStore(settings.tracking_uri, settings.model_name, settings.mlflow_timeout_s)
    try:
        for _, labels in store.everything():
            for x in labels:
                if x.id not in first or x.at < first[x.id][0]:
                    first[x.id] = (x.at, x.label)
    except (StoreError, httpx.HTTPError) as exc:
        raise TrainingFailed(f"could not read the labelled production rows: {exc}") from None
    finally:
        store.close()
    rows, foreign = [], 0
    for ident, (_, label) in first.items():
        issued = ids.read(ident, None)
        if issued is None or label not in CLASS_NAMES:
            foreign += 1
            continue
        rows.append(pipeline.LabelledRow(ident, issued.values, CLASS_NAMES.index(label)))
    if foreign:
        log.warning("skipped %d labelled rows whose ids this stack did not sign", foreign)
    return rows


# Where scikit-learn's bundled copy of the data comes from (load_iris' own reference).
DATA_SOURCE = "https://archive.ics.uci.edu/dataset/53/iris"


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


def _smoke_test(client: MlflowClient, model_id: str | None, result: pipeline.TrainResult) -> None:
    """Download the stored graph back and check it answers like the model in memory.

    What is checked is what will serve: the graph, round-tripped through the artifact store, run
    by onnxruntime. The logged scikit-learn flavor is not loaded back: loading it unpickles
    whatever the artifact store returns, and nothing after training reads it anyway.
    """
    expected = np.asarray(result.model.predict_proba(result.dataset.x_test), dtype=np.float64)
    try:
        graph, _ = champion_mod.download_graph(client, str(model_id))
        champion_mod.check_graph(graph, result.dataset, f"models:/{model_id}", expected)
    except champion_mod.CheckFailed as exc:
        raise TrainingFailed(f"the stored model: {exc}") from exc


def _store_profile(data: pipeline.Dataset, model_id: str | None) -> None:
    """What the API's drift statistics compare served rows with (api/drift.py), stored in the
    logged model beside its ONNX graph, so a registered version carries both."""
    import tempfile
    from pathlib import Path

    import mlflow

    if model_id is None:
        raise TrainingFailed("MLflow returned no logged-model id to store the reference profile in")
    reference = profile.reference_profile(
        data.x_train, data.y_train, FEATURE_NAMES, data.class_names
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / REFERENCE_PROFILE_ARTIFACT
        path.write_text(json.dumps(reference))
        mlflow.MlflowClient().log_model_artifact(model_id, str(path))


def _store_graph(
    result: pipeline.TrainResult, model_id: str | None, promote: bool, reason: str
) -> tuple[bool, str, str | None]:
    """Compile the model to ONNX and store the verified graph in the same logged model (what the
    API serves). A model that cannot be compiled is not promoted; the run's tags say why."""
    import tempfile
    from pathlib import Path

    import mlflow

    data = result.dataset
    try:
        graph = onnx_export.export(result.model, np.vstack([data.x_train, data.x_test]))
    except onnx_export.ExportFailed as exc:
        log.error("no ONNX graph: %s", exc, extra={"event": "training.onnx_failed"})
        mlflow.set_tag(onnx_export.ERROR_TAG, str(exc)[:5000])
        return False, (f"could not compile to ONNX: {exc}" if promote else reason), None
    if model_id is None:
        raise TrainingFailed("MLflow returned no logged-model id to store the ONNX graph in")

    client = mlflow.MlflowClient()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / GRAPH_FILE
        path.write_bytes(graph.onnx)
        client.log_model_artifact(model_id, str(path))
    # The digest goes on the logged model last: a graph without it is never served.
    client.set_logged_model_tags(model_id, {DIGEST_TAG: graph.sha256})
    mlflow.set_tags(
        {
            DIGEST_TAG: graph.sha256,
            "iris.onnx.max_abs_diff": repr(graph.max_abs_diff),
            "iris.onnx.raw_max_abs_diff": repr(graph.raw_max_abs_diff),
        }
    )
    return promote, reason, graph.sha256


def _register_and_promote(
    client: MlflowClient,
    settings: TrainerSettings,
    logged: tuple[str, str, str | None],
    data: pipeline.Dataset,
    accuracy: float,
    signed: tuple[str, bytes],
) -> str:
    """Register the logged model (uri, run id, model id), sign the version (graph digest,
    key), then move the alias to it."""
    model_uri, run_id, model_id = logged
    digest, key = signed
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
        tags={
            "accuracy": repr(accuracy),
            "scored_accuracy": repr(accuracy),
            "validated_at": repr(time.time()),
            "data_digest": data.digest,
            "split_seed": str(data.split_seed),
        },
        await_creation_for=60,
    )
    try:
        checkpoint("registered")
        # Signed before the alias moves to it: an unsigned version is never served.
        champion_mod.sign_version(client, name, str(mv.version), digest, key)
        champion_mod.move_alias(
            client, name, settings.model_alias, str(mv.version), "gate", run_id, key
        )
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


def _champion(settings: TrainerSettings) -> alias.Champion | None:
    """The champion now (``common/alias.py``), with the trainer's MLflow timeout and retries."""
    return alias.champion_at(
        settings.tracking_uri,
        settings.model_name,
        settings.model_alias,
        settings.mlflow_timeout_s,
        settings.mlflow_max_retries,
    )
