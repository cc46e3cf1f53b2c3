"""irisctl's use cases. Each takes typed inputs, acts through a target, returns a result object.

Nothing here prints: the CLI hands results to ``output``. Nothing here branches on a target's
name: ``targets.choose`` is the only code that knows them.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from iris_services.common.names import EXPERIMENT_NAME, MODEL_ALIAS, MODEL_NAME

from . import batch, state, targets
from .clients import prometheus, web
from .clients.mlflow import MlflowRest, ModelInfo, RunInfo
from .errors import BadInput, IrisctlError, NotUp
from .feedback import CHUNK_LABELS, check_label, send_file, send_one
from .feedback import Summary as FeedbackSummary
from .settings import Config
from .targets.base import SERVICES, Check, Progress, ServiceState, Target
from .traffic import Traffic, traffic

if TYPE_CHECKING:
    from .clients.docker import Built

LOG_SERVICES = (*SERVICES, "alertmanager", "scheduler", "minio")


@dataclass
class TrainResult:
    """The outcome of ``train --now``."""

    target: str
    exit_code: int
    summary: dict[str, Any] | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass
class UpResult:
    """What ``up`` did and where the services are."""

    target: str
    reason: str
    urls: dict[str, str]
    champion: ModelInfo | None
    trained: TrainResult | None
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class StatusResult:
    """One screen about the stack (``status --json`` prints ``as_json()``)."""

    target: str
    services: list[ServiceState]
    model: ModelInfo | None
    runs: list[RunInfo]
    alerts: list[dict[str, Any]] | None
    alerts_reason: str | None
    model_error: str | None = None
    notes: list[str] = field(default_factory=list)
    traffic: Traffic | None = None

    @property
    def healthy(self) -> bool:
        """Every long-running service runs (or is not installed); the trainer runs on demand."""
        return all(s.state in ("running", "absent") for s in self.services if s.name != "trainer")

    def as_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "services": {
                s.name: {
                    "state": s.state,
                    "url": s.url,
                    "page": s.page or s.url,
                    "uptime_s": s.uptime_s,
                    "pid": s.pid,
                    "detail": s.detail,
                }
                for s in self.services
            },
            "model": asdict(self.model) if self.model else None,
            "runs": [asdict(r) for r in self.runs],
            "alerts": self.alerts,
            "alerts_reason": self.alerts_reason,
            "model_error": self.model_error,
            "notes": self.notes,
            "traffic": self.traffic.as_status() if self.traffic else None,
        }


@dataclass
class HistoryRow:
    """One training run for ``history``."""

    run_id: str
    started_at: float
    status: str
    accuracy: float | None
    registered_version: str | None
    champion: bool
    iris_rows: int | None = None  # the training data's rows; None for runs before issue 21
    production_rows: int | None = None


def _current(config: Config) -> tuple[Target, str]:
    return targets.choose(config, state.read(config.home))


def _running(config: Config) -> Target:
    target, _ = _current(config)
    if not target.is_up():
        raise NotUp()
    return target


# -- up / down -------------------------------------------------------------------------------


def up(config: Config, progress: Progress, on_line: Callable[[str], None]) -> UpResult:
    """Bring the stack up (idempotent); train a first model when there is no champion."""
    target, reason = _current(config)
    timings: dict[str, float] = {}
    started = time.monotonic()

    def timed(step: str, state: str) -> None:
        if state == "healthy":
            timings[f"{step} healthy"] = time.monotonic() - started
        progress(step, state)

    target.up(timed)
    timings["services healthy"] = time.monotonic() - started
    rest = MlflowRest(target.endpoint("mlflow"))
    champion = rest.champion(MODEL_NAME, MODEL_ALIAS)
    trained = None
    if champion is None:
        # The API is not ready before its first model (readiness is /readyz), only alive.
        _wait_ready(target.endpoint("model-api"), 60, "/healthz", "answer its liveness check")
        progress("trainer", "training a first model")
        t0 = time.monotonic()
        # attach: an `up` killed mid-training left that training running; follow it to its end.
        trained = _train(target, on_line, attach=True)
        timings["first training"] = time.monotonic() - t0
        if not trained.ok:
            raise IrisctlError(
                f"the first training failed: {trained.error}",
                "see `irisctl logs trainer`; retry with `irisctl train --now`",
            )
        champion = rest.champion(MODEL_NAME, MODEL_ALIAS)
    if champion is not None:
        t0 = time.monotonic()
        progress("model-api", "loading the champion")
        _wait_ready(target.endpoint("model-api"), timeout_s=config["poll_seconds"] + 60)
        progress("model-api", f"serving version {champion.version}")
        timings["api ready"] = time.monotonic() - t0
    timings["total"] = time.monotonic() - started
    warnings = []
    if champion is None and trained is not None and trained.summary:
        # Every run is scored on the same held-out rows, so a first run below the threshold
        # means the threshold is above what these rows allow: say what was reached.
        runs = rest.recent_runs(EXPERIMENT_NAME, 100)
        scores = [r.accuracy for r in runs if r.accuracy is not None]
        best = f"{max(scores):.4f}" if scores else "none"
        warnings.append(
            f"the first model was not promoted ({trained.summary.get('reason')}), so the API has "
            f"nothing to serve yet. The threshold {config['accuracy_threshold']} is above what "
            f"the data allows so far: the best accuracy reached on the held-out rows is {best}. "
            "Lower it (`irisctl up --threshold 0.85`) or run `irisctl train --now` again "
            "(each run samples new hyperparameters)"
        )
    services = {s.name: s for s in target.services()}
    if services.get("prometheus") and services["prometheus"].state == "absent":
        warnings.append(
            "prometheus is not installed, so alerts are unavailable; add it with "
            "`sudo apt-get install prometheus prometheus-alertmanager` (in a clone: "
            "`./scripts/install-system-deps`), then run `irisctl up` again"
        )
    urls = {s.name: s.page or s.url for s in services.values() if s.url and s.state != "absent"}
    if "mlflow" in urls:
        try:
            experiment_id = rest.experiment_id(EXPERIMENT_NAME)
        except IrisctlError:
            experiment_id = None
        if experiment_id is not None:
            # MLflow 3.17's UI opens every experiment in GenAI mode unless the browser chose
            # "Model training" before or the link says so (it ignores the experiment's kind tag).
            urls["mlflow ui"] = (
                f"{urls['mlflow']}/#/experiments/{experiment_id}?workflowType=machine_learning"
            )
    return UpResult(target.name, reason, urls, champion, trained, warnings, timings)


def _wait_ready(
    api_url: str, timeout_s: float, path: str = "/readyz", what: str = "load the champion"
) -> None:
    deadline = time.monotonic() + timeout_s
    while not web.healthy(f"{api_url}{path}", 2.0):
        if time.monotonic() > deadline:
            raise IrisctlError(
                f"the model API did not {what} within {timeout_s:.0f}s",
                "see `irisctl logs model-api`",
            )
        time.sleep(0.3)


def down(
    config: Config,
    purge: bool,
    dry_run: bool = False,
    cluster: bool = False,
    progress: Progress | None = None,
) -> list[str]:
    """Stop the stack; ``purge``: also its data; ``dry_run``: only say what would go."""
    target, _ = _current(config)
    return target.down(purge, dry_run=dry_run, cluster=cluster, progress=progress)


def purge_question(config: Config) -> str:
    """The confirmation ``down --purge`` asks: what the chosen target would delete."""
    target, _ = _current(config)
    return f"Delete {target.purge_scope()}?"


def secrets(config: Config) -> dict[str, str]:
    """The credentials the running stack's target generated."""
    return _running(config).secrets()


def port_forward(config: Config, on_error: Callable[[str], None]) -> list[Any]:
    """Forward local ports to the stack's services; the running forwards (stop() each)."""
    target, _ = _current(config)
    return target.forward(on_error)


# -- train / predict -------------------------------------------------------------------------


def train(config: Config, on_line: Callable[[str], None]) -> TrainResult:
    """Run one training job now on the running stack; after a promotion, wait (bounded) until
    the API serves the new champion, so a `predict` right after gets it."""
    target = _running(config)
    result = _train(target, on_line)
    version = (result.summary or {}).get("version")
    if result.ok and (result.summary or {}).get("promoted") and version:
        _wait_serving(target.endpoint("model-api"), str(version), config["poll_seconds"] + 30)
    return result


def cancel_training(config: Config) -> list[str]:
    """Stop the running training job(s) of the running stack; what was stopped."""
    return _running(config).cancel_training()


def _wait_serving(api_url: str, version: str, timeout_s: float) -> bool:
    """Until the API's ``/model`` is ``version``; False at the deadline, or at once when the API
    does not answer at all (it is down: `status` says so; nothing to wait for)."""
    deadline = time.monotonic() + timeout_s
    unanswered = 0
    while time.monotonic() < deadline and unanswered < 3:
        try:
            if str(web.get_json(f"{api_url}/model", 2.0).get("version")) == version:
                return True
            unanswered = 0
        except (IrisctlError, httpx.HTTPError, ValueError, AttributeError):
            unanswered += 1
        time.sleep(0.3)
    return False


def _train(target: Target, on_line: Callable[[str], None], attach: bool = False) -> TrainResult:
    outcome = target.train(on_line, attach)
    return TrainResult(target.name, outcome.exit_code, outcome.summary, outcome.error)


def parse_features(tokens: list[str]) -> list[float]:
    """Exactly four finite numbers, or BadInput naming the problem (RELIABILITY.md A1/A2)."""
    if len(tokens) != 4:
        raise BadInput(
            f"predict takes 4 features (sepal length, sepal width, petal length, "
            f"petal width), got {len(tokens)}",
            "example: irisctl predict 5.1 3.5 1.4 0.2",
        )
    values = []
    for token in tokens:
        try:
            value = float(token)
        except ValueError:
            raise BadInput(
                f"not a number: {token!r}", "features are plain numbers like 5.1"
            ) from None
        if not math.isfinite(value) or token.strip().lower().startswith(("0x", "+0x", "-0x")):
            raise BadInput(f"not a finite number: {token!r}", "features are plain numbers like 5.1")
        values.append(value)
    return values


TERMINAL_ROWS = 1_000  # without --out, more rows than this would only flood the terminal


def read_rows(path: Path) -> list[list[float]]:
    """Rows of four numbers from a CSV file or "-" (a header line is allowed), at most
    TERMINAL_ROWS of them: a larger file is scored with ``--out`` (``predict_file``)."""
    try:
        stream = sys.stdin if str(path) == "-" else path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from None
    rows: list[list[str]] = []
    with stream if stream is not sys.stdin else contextlib.nullcontext(stream):
        try:
            for r in csv.reader(stream):
                if r and any(c.strip() for c in r):
                    rows.append(r)
                if len(rows) > TERMINAL_ROWS + 1:
                    raise BadInput(
                        f"{path} has more than {TERMINAL_ROWS:,} rows: too many for the terminal",
                        f"write them to a file: irisctl predict --file {path} --out scores.csv",
                    )
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"cannot read {path}: {exc}") from None
    if rows and not _numeric(rows[0]):
        rows = rows[1:]
    if len(rows) > TERMINAL_ROWS:
        raise BadInput(
            f"{path} has more than {TERMINAL_ROWS:,} rows: too many for the terminal",
            f"write them to a file: irisctl predict --file {path} --out scores.csv",
        )
    if not rows:
        raise BadInput(f"{path} has no rows")
    out = []
    for n, row in enumerate(rows, 1):
        try:
            out.append(parse_features([c.strip() for c in row]))
        except BadInput as exc:
            raise BadInput(f"{path}, row {n}: {exc.message}", exc.hint) from None
    return out


def _numeric(row: list[str]) -> bool:
    try:
        [float(c) for c in row]
    except ValueError:
        return False
    return True


def _api_url(config: Config) -> str:
    """The running stack's model API, without probing the target (a request says soon enough)."""
    recorded = state.read(config.home)
    if not recorded or not recorded.get("up"):
        raise NotUp()
    target, _ = _current(config)
    return target.endpoint("model-api")


def predict(config: Config, rows: list[list[float]]) -> dict[str, Any]:
    """Ask the running model API; its JSON answer (single row: ``features``; else ``instances``)."""
    payload: dict[str, Any] = {"features": rows[0]} if len(rows) == 1 else {"instances": rows}
    return web.predict(_api_url(config), payload)


def predict_file(
    config: Config,
    source: str,
    out: str,
    skip_bad: str | None,
    on_progress: Callable[[int, int], None] | None,
    chunk_rows: int | None = None,
) -> batch.Summary:
    """Score a CSV file of any size through the running model API into ``out`` (batch.py)."""
    return batch.score_file(
        _api_url(config),
        source,
        out,
        skip_bad=skip_bad,
        on_progress=on_progress,
        chunk_rows=chunk_rows or batch.CHUNK_ROWS,
    )


def feedback(config: Config, id_: str, label: str) -> web.Feedback:
    """Label one prediction (its id, from ``predict``) with what the flower really was; a label
    that is not a class name is refused before anything is sent."""
    check_label(id_, label)
    return send_one(_api_url(config), id_, label)


def feedback_file(
    config: Config,
    source: str,
    skip_bad: str | None,
    on_progress: Callable[[int, int], None] | None,
    chunk_labels: int | None = None,
) -> FeedbackSummary:
    """Send a CSV file of ``id,label`` rows of any size to the running model API (feedback.py)."""
    return send_file(
        _api_url(config),
        source,
        skip_bad=skip_bad,
        on_progress=on_progress,
        chunk_labels=chunk_labels or CHUNK_LABELS,
    )


# -- status / logs / render ------------------------------------------------------------------


def status(config: Config) -> StatusResult:
    """Services, champion, recent runs and alert states, probed in parallel with timeouts."""
    target = _running(config)
    rest = MlflowRest(target.endpoint("mlflow"), timeout_s=2.0)
    with ThreadPoolExecutor(max_workers=4) as pool:
        services_f = pool.submit(target.services)
        champion_f = pool.submit(rest.champion, MODEL_NAME, MODEL_ALIAS)
        runs_f = pool.submit(rest.recent_runs, EXPERIMENT_NAME, 5)
        latest_f = pool.submit(rest.latest_version, MODEL_NAME)
        moves_f = pool.submit(rest.alias_moves, MODEL_NAME, MODEL_ALIAS)
        services = services_f.result()
        alerts_f = pool.submit(_alerts, target, services)
        traffic_f = pool.submit(_status_traffic, target, services, config["live_accuracy_window"])
        model_error = None
        notes = []
        try:
            champion, runs, latest = champion_f.result(), runs_f.result(), latest_f.result()
            # A version that was champion once (then rolled back from) was promoted, not lost.
            was_champion = {m.to_version for m in moves_f.result()}
        except IrisctlError as exc:
            champion, runs, latest, model_error = None, [], None, exc.message
            was_champion = set()
        if (
            latest
            and latest not in was_champion
            and (champion is None or int(latest) > int(champion.version))
        ):
            # Versions are registered only to be promoted: a newer one means a training died
            # between registering and moving the alias (RELIABILITY.md C4). It is never served.
            notes.append(
                f"version {latest} is registered but not {MODEL_ALIAS} (a training stopped "
                f"before promoting it); the API serves "
                f"{'version ' + champion.version if champion else 'nothing'}; the next "
                "successful `irisctl train --now` moves the alias"
            )
        alerts, alerts_reason = alerts_f.result()
        traffic = traffic_f.result()
    return StatusResult(
        target.name, services, champion, runs, alerts, alerts_reason, model_error, notes, traffic
    )


def stopped_status(config: Config) -> StatusResult:
    """``status``'s shape for a stack that is not up: every service stopped, nothing known."""
    target, _ = _current(config)
    services = [ServiceState(name, "stopped", None) for name in SERVICES]
    return StatusResult(target.name, services, None, [], None, "the stack is not up")


def _alerts(
    target: Target, services: list[ServiceState]
) -> tuple[list[dict[str, Any]] | None, str | None]:
    prom = next((s for s in services if s.name == "prometheus"), None)
    if prom is None or prom.state == "absent":
        return None, "prometheus is not installed (sudo apt-get install prometheus)"
    try:
        found = prometheus.alerts(target.endpoint("prometheus"), timeout_s=2.0)
    except IrisctlError as exc:
        return None, exc.message
    return [
        {"name": a.name, "state": a.state, "since": a.since, "summary": a.summary} for a in found
    ], None


def alerts(config: Config) -> list[prometheus.Alert]:
    """Every alert rule with its state, since when, annotations and runbook."""
    target = _running(config)
    return prometheus.alerts(target.endpoint("prometheus"))


def _status_traffic(
    target: Target, services: list[ServiceState], live_window: str
) -> Traffic | None:
    prom = next((s for s in services if s.name == "prometheus"), None)
    if prom is None or prom.state == "absent":
        return None
    try:
        return traffic(target.endpoint("prometheus"), mix_range="1h", live_window=live_window)
    except IrisctlError:
        return None  # `alerts_reason` already says why Prometheus is not there


def top_source(config: Config) -> str:
    """The Prometheus URL ``top`` reads, from the running stack's target."""
    return _running(config).endpoint("prometheus")


def history(config: Config, limit: int) -> list[HistoryRow]:
    """The last ``limit`` training runs, oldest first, marking the serving champion's."""
    target = _running(config)
    rest = MlflowRest(target.endpoint("mlflow"))
    champion = rest.champion(MODEL_NAME, MODEL_ALIAS)
    runs = rest.recent_runs(EXPERIMENT_NAME, limit)
    return [
        HistoryRow(
            run_id=r.run_id,
            started_at=r.started_at,
            status=r.status,
            accuracy=r.accuracy,
            registered_version=r.registered_version,
            champion=champion is not None and r.registered_version == champion.version,
            iris_rows=r.iris_rows,
            production_rows=r.production_rows,
        )
        for r in reversed(runs)
    ]


def logs(config: Config, service: str, follow: bool, tail: int | None) -> Iterator[str]:
    """A service's log lines; ``trainer`` is the last training run."""
    if service not in LOG_SERVICES:
        raise BadInput(f"unknown service {service!r}", f"choose one of: {', '.join(LOG_SERVICES)}")
    target, _ = _current(config)
    return target.logs(service, follow, tail)


# Settings that are credentials: never printed (the local alertmanager.yml holds the webhook URL).
SECRET_SETTINGS = ("alert_webhook_url", "backend_store_uri")


def render(config: Config) -> dict[str, str]:
    """The configuration ``up`` would apply for the chosen target, credentials redacted."""
    target, _ = _current(config)
    from jinja2.utils import htmlsafe_json_dumps

    values = [config[name] for name in SECRET_SETTINGS if config[name]]
    # as given, and as the templates' `tojson` writes it (`&` → `\u0026`, ...)
    hidden = {form for v in values for form in (v, str(htmlsafe_json_dumps(v))[1:-1])}
    files = target.render()
    for value in hidden:
        files = {n: text.replace(value, "[redacted]") for n, text in files.items()}
    return files


@dataclass
class BuildResult:
    """What ``build`` produced: service → image tag, and where."""

    target: str
    engine: str
    images: dict[str, str]
    built: dict[str, Built]  # image tag → its build result


def build(config: Config, base_image: str | None, on_line: Callable[[str], None]) -> BuildResult:
    """Build the images into the Docker engine the target uses (minikube's for it)."""
    from .images import SERVICE_IMAGES, build_images

    target, _ = _current(config)
    results, where = build_images(config, target.name, base_image, on_line)
    tags = {service: results[image].tag for service, image in SERVICE_IMAGES.items()}
    return BuildResult(target.name, where, tags, {b.tag: b for b in results.values()})


# -- doctor ----------------------------------------------------------------------------------


def doctor(config: Config) -> list[Check]:
    """Preflight checks, each with the fix."""
    checks = []
    py = sys.version_info
    checks.append(
        Check(
            "python",
            "ok" if py >= (3, 11) else "fail",
            f"{py.major}.{py.minor}",
            "" if py >= (3, 11) else "install Python 3.11 or newer",
        )
    )
    prom = shutil.which("prometheus")
    checks.append(
        Check(
            "prometheus",
            "ok" if prom else "warn",
            prom or "not found on PATH",
            "" if prom else "sudo apt-get install prometheus (alerts need it)",
        )
    )
    # Debian names it prometheus-alertmanager; upstream's binary is alertmanager.
    alertmanager = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    checks.append(
        Check(
            "alertmanager",
            "ok" if alertmanager else "warn",
            alertmanager or "not found on PATH",
            ""
            if alertmanager
            else "sudo apt-get install prometheus-alertmanager (alert notifications need it)",
        )
    )
    home = config.home
    probe = home if home.exists() else home.parent
    writable = os.access(probe, os.W_OK) if probe.exists() else False
    checks.append(
        Check(
            "IRISCTL_HOME",
            "ok" if writable else "fail",
            str(home),
            "" if writable else "set IRISCTL_HOME to a writable directory",
        )
    )
    if probe.exists():
        free_gib = shutil.disk_usage(probe).free / 2**30
        checks.append(
            Check(
                "disk space",
                "ok" if free_gib >= 1 else "fail",
                f"{free_gib:.1f} GiB free",
                "" if free_gib >= 1 else "free at least 1 GiB under IRISCTL_HOME",
            )
        )
    recorded = state.read(home) or {}
    chosen = _current(config)[0]
    running = bool(recorded.get("up")) and chosen.is_up()
    for key, port in config.ports.items():
        if running and recorded.get("ports", {}).get(key) == port:
            checks.append(Check(f"port {port} ({key})", "ok", "held by this irisctl stack"))
            continue
        free = web.port_free(port)
        checks.append(
            Check(
                f"port {port} ({key})",
                "ok" if free else "fail",
                "free" if free else "in use by another process",
                "" if free else f"pick another with --{key}-port or IRISCTL_{key.upper()}_PORT",
            )
        )
    for tool, why in (
        ("minikube", "the minikube target"),
        ("docker", "image builds"),
        ("kubectl", "the Kubernetes targets"),
    ):
        path = shutil.which(tool)
        checks.append(
            Check(
                tool,
                "ok" if path else "warn",
                path or "not found",
                "" if path else f"only needed for {why}",
            )
        )
    checks.extend(chosen.checks())
    return checks


# -- promote / rollback / champion periods ---------------------------------------------------


@dataclass
class AliasResult:
    """What ``promote`` or ``rollback`` did."""

    target: str
    alias: str
    from_version: str | None
    to_version: str
    reason: str
    accuracy: float  # the version's score on the held-out rows, by the trainer's check
    served: bool  # the model API serves it (it follows within one poll)


def promote(config: Config, version: str | None, force: bool = False) -> AliasResult:
    """Move the alias to ``version`` (None: back to the previous champion) after the trainer's
    load and smoke check; then wait (bounded) until the API serves it."""
    from .clients.mlflow import move_alias

    if version is not None and not version.strip().isdigit():
        raise BadInput(f"not a version number: {version!r}", "example: irisctl promote 3")
    target = _running(config)
    move, checked = move_alias(
        target.endpoint("mlflow"),
        MODEL_NAME,
        MODEL_ALIAS,
        None if version is None else version.strip(),
        config["accuracy_threshold"],
        _signing_key(target),
        force,
    )
    api = target.endpoint("model-api")
    served = _wait_serving(api, move.to_version, config["poll_seconds"] + 30)
    return AliasResult(
        target.name,
        move.alias,
        move.from_version,
        move.to_version,
        move.reason,
        checked.accuracy,
        served,
    )


def _signing_key(target: Target) -> str:
    """The key this stack's trainer signs versions with: a file locally, the Secret on
    Kubernetes (README, "Security")."""
    from iris_services.common.signing import SECRET_KEY

    key = target.secrets().get(SECRET_KEY)
    if not key:
        raise IrisctlError(
            "this stack has no signing key, so no version can be checked as ours",
            "run `irisctl up` (it creates the key), then `irisctl train --now`",
        )
    return key


@dataclass
class ChampionPeriod:
    """A stretch of time one version was the champion."""

    version: str
    start: float
    end: float | None  # None: the champion now
    reason: str  # gate, manual, rollback
    ended_by: str | None


def champion_periods(config: Config) -> list[ChampionPeriod]:
    """The champion periods, oldest first, from the alias moves recorded in MLflow."""
    from iris_services.train.champion import periods

    target = _running(config)
    moves = MlflowRest(target.endpoint("mlflow")).alias_moves(MODEL_NAME, MODEL_ALIAS)
    return [ChampionPeriod(**asdict(p)) for p in periods(moves)]
