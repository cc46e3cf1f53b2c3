"""MLflow for the CLI: read-only REST queries (fast: no `import mlflow`), and the two commands
that move the serving alias (``promote``, ``rollback``), which load the model with the SDK."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import BadInput, IrisctlError

if TYPE_CHECKING:
    from iris_services.train.champion import AliasMove, Checked


@dataclass(frozen=True)
class ModelInfo:
    """The champion as the CLI shows it (``status --json``'s ``champion``); read by
    ``iris_services.common.alias``, the one reader of the alias."""

    name: str
    version: str
    alias: str
    accuracy: float | None
    registered_at: float  # unix seconds


@dataclass(frozen=True)
class RunInfo:
    """One training run."""

    run_id: str
    status: str
    started_at: float
    accuracy: float | None
    gate: str | None
    registered_version: str | None = None
    # The training data's rows (params the trainer logs since issue 21; None for older runs).
    iris_rows: int | None = None
    production_rows: int | None = None


class MlflowRest:
    """The few REST calls irisctl needs, each bounded by ``timeout_s``."""

    def __init__(self, base_url: str, timeout_s: float = 3.0) -> None:
        self.base = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def _unreachable(self, exc: httpx.HTTPError) -> IrisctlError:
        return IrisctlError(
            f"MLflow at {self.base} is not reachable: {exc}",
            "check `irisctl status` and `irisctl logs mlflow`",
        )

    def _call(self, method: str, path: str, **kw: Any) -> dict[str, Any] | None:
        try:
            resp = httpx.request(method, f"{self.base}{path}", timeout=self.timeout_s, **kw)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if resp.status_code == 404 or (
            resp.status_code == 400 and "RESOURCE_DOES_NOT_EXIST" in resp.text
        ):
            return None
        if not resp.is_success:
            raise IrisctlError(f"MLflow answered {resp.status_code} to {path}: {resp.text[:200]}")
        return dict(resp.json())

    def champion(self, name: str, alias: str) -> ModelInfo | None:
        """The version ``alias`` points to, or None when there is none yet."""
        from iris_services.common.alias import RegistryError, read_champion

        try:
            with httpx.Client(base_url=self.base, timeout=self.timeout_s) as http:
                champion = read_champion(http, name, alias)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        except RegistryError as exc:
            raise IrisctlError(f"MLflow at {self.base}: {exc}") from None
        if champion is None:
            return None
        return ModelInfo(
            champion.name,
            champion.version,
            champion.alias,
            champion.accuracy,
            champion.registered_at,
        )

    def alias_moves(self, name: str, alias: str) -> list[AliasMove]:
        """Every recorded move of ``alias``, oldest first (tags on the registered model)."""
        from iris_services.train.champion import parse_moves

        data = self._call("GET", "/api/2.0/mlflow/registered-models/get", params={"name": name})
        tags = (data or {}).get("registered_model", {}).get("tags", [])
        return parse_moves({t["key"]: t["value"] for t in tags}, alias)

    def experiment_id(self, experiment: str) -> str | None:
        """The id of ``experiment`` (None: not created yet)."""
        exp = self._call(
            "GET", "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": experiment}
        )
        return str(exp["experiment"]["experiment_id"]) if exp else None

    def latest_version(self, name: str) -> str | None:
        """The newest registered version of ``name`` (None: none yet)."""
        data = self._call(
            "GET",
            "/api/2.0/mlflow/model-versions/search",
            params={"filter": f"name='{name}'", "max_results": 1000},
        )
        found = [int(mv["version"]) for mv in (data or {}).get("model_versions", [])]
        return str(max(found)) if found else None

    def recent_runs(self, experiment: str, limit: int = 5) -> list[RunInfo]:
        """The newest training runs of ``experiment``, newest first."""
        exp = self._call(
            "GET", "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": experiment}
        )
        if not exp:
            return []
        data = (
            self._call(
                "POST",
                "/api/2.0/mlflow/runs/search",
                json={
                    "experiment_ids": [exp["experiment"]["experiment_id"]],
                    "max_results": limit,
                    "order_by": ["attributes.start_time DESC"],
                },
            )
            or {}
        )
        runs = []
        for run in data.get("runs", []):
            metrics = {m["key"]: m["value"] for m in run.get("data", {}).get("metrics", [])}
            tags = {t["key"]: t["value"] for t in run.get("data", {}).get("tags", [])}
            params = {p["key"]: p["value"] for p in run.get("data", {}).get("params", [])}
            info = run["info"]
            runs.append(
                RunInfo(
                    run_id=info["run_id"],
                    status=info["status"],
                    started_at=int(info["start_time"]) / 1000.0,
                    accuracy=metrics.get("accuracy"),
                    gate=tags.get("gate"),
                    registered_version=tags.get("registered_version"),
                    iris_rows=_count(params.get("iris_rows")),
                    production_rows=_count(params.get("production_rows")),
                )
            )
        return runs


def _count(param: str | None) -> int | None:
    """A row count a run logged as a param; None when it did not (or it is not a number)."""
    try:
        return int(param) if param is not None else None
    except ValueError:
        return None


def move_alias(
    base_url: str,
    name: str,
    alias: str,
    version: str | None,
    threshold: float,
    key_text: str,
    force: bool = False,
) -> tuple[AliasMove, Checked]:
    """``promote`` (a version) or ``rollback`` (``version`` None) with the trainer's own check,
    the version signed with this stack's key (``key_text``); the alias does not move when it
    fails."""
    # This process imports mlflow: no usage telemetry from it either (README, "Privacy").
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    # The check runs the version's ONNX graph and loads no model; should a loader ever be called
    # here, MLflow refuses to unpickle (its default is to allow it).
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
    from mlflow.exceptions import MlflowException

    from iris_services.common import registry, signing
    from iris_services.common.settings import CommonSettings
    from iris_services.train import champion, pipeline

    client = registry.configure(
        CommonSettings(tracking_uri=base_url, mlflow_max_retries=1, mlflow_timeout_s=10)
    )
    try:
        key = signing.parse_key(key_text)
    except signing.SignatureError as exc:
        raise IrisctlError(f"this stack's {exc}", "run `irisctl up` to create the key") from None
    data = pipeline.load_dataset()
    try:
        if version is None:
            return champion.rollback(client, name, alias, data, threshold, key)
        return champion.promote(client, name, alias, version, data, threshold, "manual", key, force)
    except champion.Refused as exc:
        error = BadInput if exc.bad_input else IrisctlError
        raise error(str(exc), exc.hint or None) from None
    except MlflowException as exc:
        raise IrisctlError(
            f"MLflow at {base_url} refused: {exc.message[:300]}",
            "check `irisctl status` and `irisctl logs mlflow`",
        ) from None
