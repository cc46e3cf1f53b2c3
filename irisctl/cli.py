"""The command line: commands only. Each command reads its options, calls one use case in
``ops`` and hands the result to ``output.show``. The typer adaptations they stand on (the error
boundary, the global options, the shared option helpers) are in ``cli_support``.

Heavy modules (mlflow, kubernetes, docker, sklearn) are never imported here, so ``--help`` stays
fast; ``ops`` is imported inside each command.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from . import output
from .cli_support import Group, JsonOpt, global_options, load_config, reporter
from .errors import EXIT_FAILED, EXIT_NOT_UP, BadInput, IrisctlError, NotUp

app = typer.Typer(
    cls=Group,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train, track, serve, monitor and alert on an Iris classifier on this machine.",
    epilog="Example: irisctl up && irisctl predict 5.1 3.5 1.4 0.2",
)
app.callback()(global_options)


@app.command()
def up(
    ctx: typer.Context,
    mlflow_port: int = typer.Option(None, "--mlflow-port", help="Local MLflow port [5000]."),
    api_port: int = typer.Option(None, "--api-port", help="Local model API port [8080]."),
    monitor_port: int = typer.Option(None, "--monitor-port", help="Local monitor port [8001]."),
    prometheus_port: int = typer.Option(
        None, "--prometheus-port", help="Local Prometheus port [9090]."
    ),
    alertmanager_port: int = typer.Option(
        None, "--alertmanager-port", help="Local Alertmanager port [9093]."
    ),
    threshold: float = typer.Option(
        None, "--threshold", metavar="0-1", help="Promotion accuracy threshold [0.9]."
    ),
    schedule: str = typer.Option(
        None, "--schedule", metavar="CRON", help="Training cron schedule [0 3 * * *]."
    ),
    backend_store_uri: str = typer.Option(
        None,
        "--backend-store-uri",
        help="Kubernetes: MLflow's backend store, kept in the Secret (default: sqlite on a PVC).",
    ),
    adopt: bool = typer.Option(
        None,
        "--adopt",
        help="Kubernetes: deploy into an existing namespace irisctl did not create "
        "(left as it is; never purged).",
    ),
    json_out: bool = JsonOpt,
) -> None:
    """Bring the whole stack up (idempotent); train a first model if there is no champion.

    Example: irisctl up
    """
    from . import ops

    config = load_config(
        ctx,
        mlflow_port=mlflow_port,
        api_port=api_port,
        monitor_port=monitor_port,
        prometheus_port=prometheus_port,
        alertmanager_port=alertmanager_port,
        accuracy_threshold=threshold,
        train_schedule=schedule,
        backend_store_uri=backend_store_uri,
        adopt=adopt,
    )
    report = ctx.obj["reporter"] = reporter(json_out)  # Ctrl-C says what was still starting
    result = ops.up(config, report.progress, report.line)
    output.show(output.UpView(result), json_out)


@app.command()
def train(
    ctx: typer.Context,
    now: bool = typer.Option(False, "--now", help="Run one training job now."),
    cancel: bool = typer.Option(False, "--cancel", help="Stop the training that is running."),
    json_out: bool = JsonOpt,
) -> None:
    """Run one training job now, stream its logs and report the result.

    Ctrl-C stops following, not the training: `irisctl train --cancel` stops it.

    Example: irisctl train --now
    """
    from . import ops

    if now and cancel:
        raise BadInput("give --now or --cancel, not both")
    if cancel:
        stopped = ops.cancel_training(load_config(ctx))
        output.show(output.CancelView(stopped), json_out)
        return
    if not now:
        raise BadInput(
            "train runs only on demand with --now; scheduled runs follow the schedule",
            "irisctl train --now",
        )
    report = reporter(json_out)
    result = ops.train(load_config(ctx), report.line)
    output.show(output.TrainView(result), json_out)
    if not result.ok:
        raise IrisctlError(
            f"training failed: {result.error or f'exit {result.exit_code}'}",
            "see `irisctl logs trainer`",
        )


@app.command(context_settings={"ignore_unknown_options": True})
def predict(
    ctx: typer.Context,
    features: list[str] = typer.Argument(
        None,
        metavar="F1 F2 F3 F4",
        help="Four numbers (cm): sepal length, sepal width, petal length, petal width.",
    ),
    file: str = typer.Option(
        None,
        "--file",
        "-f",
        metavar="CSV",
        help="CSV file of rows of 4 features (batch; - reads standard input).",
    ),
    out: str = typer.Option(
        None,
        "--out",
        "-o",
        metavar="OUT",
        help="Score a --file of any size into OUT: .jsonl is JSON Lines, else CSV (- = stdout).",
    ),
    skip_bad: str = typer.Option(
        None,
        "--skip-bad",
        metavar="FILE",
        help="With --out: write malformed rows and why to FILE and go on, instead of stopping.",
    ),
    chunk_rows: int = typer.Option(None, "--chunk-rows", min=1, max=10_000, hidden=True),
    json_out: bool = JsonOpt,
) -> None:
    """Ask the served model; print the class and its probabilities.

    Example: irisctl predict 5.1 3.5 1.4 0.2
    Example: irisctl predict --file rows.csv --out scores.csv
    """
    from . import ops

    if file is not None and features:
        raise BadInput(
            "give either 4 features or --file, not both",
            "irisctl predict 5.1 3.5 1.4 0.2, or irisctl predict --file rows.csv",
        )
    if (out is not None or skip_bad is not None) and file is None:
        raise BadInput(
            "--out and --skip-bad score a --file",
            "irisctl predict --file rows.csv --out scores.csv",
        )
    if skip_bad is not None and out is None:
        raise BadInput(
            "--skip-bad goes with --out",
            "irisctl predict --file rows.csv --out scores.csv --skip-bad bad.csv",
        )
    if out is not None:
        with output.BatchProgress(file) as progress:
            summary = ops.predict_file(
                load_config(ctx), file, out, skip_bad, progress.update, chunk_rows
            )
        # With --out -, stdout is the scores: the summary goes to stderr even under --json.
        output.show(output.BatchView(summary), json_out and out != "-")
        return
    rows = ops.read_rows(Path(file)) if file is not None else [ops.parse_features(features or [])]
    answer = ops.predict(load_config(ctx), rows)
    output.show(output.PredictionView(answer), json_out)


@app.command(context_settings={"ignore_unknown_options": True})
def feedback(
    ctx: typer.Context,
    id_: str = typer.Argument(
        None, metavar="ID", help="A prediction's id, as `predict` printed it."
    ),
    label: str = typer.Argument(
        None, metavar="LABEL", help="What the flower really was: setosa, versicolor or virginica."
    ),
    # No -f: an id may start with "-" and hold an "f", which click would read as -f VALUE.
    file: str = typer.Option(
        None, "--file", metavar="CSV", help="CSV of id,label rows (header optional; - = stdin)."
    ),
    skip_bad: str = typer.Option(
        None,
        "--skip-bad",
        metavar="FILE",
        help="With --file: write malformed rows and why to FILE and go on, instead of stopping.",
    ),
    chunk_labels: int = typer.Option(None, "--chunk-labels", min=1, max=10_000, hidden=True),
    json_out: bool = JsonOpt,
) -> None:
    """Tell the model API what predicted flowers really were: their live accuracy, and rows
    for the next training.

    Exit 0 when accepted (or already labelled), 2 for an unknown id or a bad label.

    Example: irisctl feedback ID versicolor
    Example: irisctl feedback --file labels.csv
    """
    from . import ops
    from .feedback import UnknownId

    if (file is None) == (id_ is None) or (file is None and (label is None or skip_bad)):
        raise BadInput(
            "feedback takes ID LABEL, or --file labels.csv (--skip-bad goes with --file)",
            "irisctl feedback ID versicolor, or irisctl feedback --file labels.csv",
        )
    config = load_config(ctx)
    if file is not None:
        with output.BatchProgress(file, "labels") as progress:
            summary = ops.feedback_file(config, file, skip_bad, progress.update, chunk_labels)
        output.show(output.FeedbackFileView(summary), json_out)
        return
    answer = ops.feedback(config, id_, label)
    output.show(output.FeedbackView(answer, id_, label), json_out)
    if answer.unknown:
        raise UnknownId(id_, config["feedback_max_age_days"])


@app.command()
def status(
    ctx: typer.Context,
    show_secrets: bool = typer.Option(
        False, "--show-secrets", help="Print only the generated credentials (Kubernetes targets)."
    ),
    json_out: bool = JsonOpt,
) -> None:
    """Services, the champion (version, accuracy, age), recent runs and alert states.

    Exit 0 when healthy, 1 when degraded, 3 when the stack is not up.

    Example: irisctl status --json
    """
    from . import ops

    if show_secrets:
        found = ops.secrets(load_config(ctx))
        output.show(output.SecretsView(found), json_out)
        return
    try:
        result = ops.status(load_config(ctx))
    except NotUp as exc:
        if not json_out:
            raise
        output.error(exc.message, exc.hint)
        # Scripts get the same shape, every service stopped, and the contract's exit code.
        output.show(output.StatusView(ops.stopped_status(load_config(ctx))), json_out)
        raise typer.Exit(EXIT_NOT_UP) from None
    output.show(output.StatusView(result), json_out)
    if not result.healthy:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def alerts(ctx: typer.Context, json_out: bool = JsonOpt) -> None:
    """Every alert rule: state (inactive, pending, firing), since when, summary and runbook.

    Example: irisctl alerts --json
    """
    from . import ops

    found = ops.alerts(load_config(ctx))
    output.show(output.AlertsView(found), json_out)


@app.command()
def top(
    ctx: typer.Context,
    interval: float = typer.Option(2.0, "--interval", "-i", min=0.5, help="Seconds per refresh."),
    once: bool = typer.Option(False, "--once", help="Print one screen and exit."),
    json_out: bool = JsonOpt,
) -> None:
    """Live view from Prometheus: request and error rates, p50/p99 latency, served version,
    live accuracy and labels per hour, class mix, input drift per feature, alert states.
    Ctrl-C quits.

    Example: irisctl top
    """
    from . import ops

    config = load_config(ctx)
    source = ops.top_source(config)
    window = config["live_accuracy_window"]
    if once or json_out:
        snapshot = ops.traffic(source, live_window=window)
        output.show(output.TrafficView(snapshot, source, interval), json_out)
        return
    output.live_top(lambda: ops.traffic(source, live_window=window), source, interval)


@app.command()
def history(
    ctx: typer.Context,
    limit: int = typer.Option(
        20, "--last", "-n", min=1, max=1000, metavar="N", help="How many runs."
    ),
    plot: Path = typer.Option(
        None, "--plot", metavar="FILE.png", help="Also write the accuracy-over-time chart (PNG)."
    ),
    json_out: bool = JsonOpt,
) -> None:
    """The last training runs (time, accuracy, registered?, champion?) with a sparkline, and
    the champion periods (which version served when, and how it got there).

    Example: irisctl history --last 50 --plot accuracy.png
    """
    from . import ops, plots

    if plot is not None:
        plots.check_path(plot)
    config = load_config(ctx)
    rows = ops.history(config, limit)
    if plot is not None:
        plots.accuracy_over_time(rows, plot, config["accuracy_threshold"])
    output.show(output.HistoryView(rows, plot, lambda: ops.champion_periods(config)), json_out)


@app.command()
def promote(
    ctx: typer.Context,
    version: str = typer.Argument(..., help="The registered version to serve."),
    force: bool = typer.Option(False, "--force", help="Promote it even below the threshold."),
    json_out: bool = JsonOpt,
) -> None:
    """Make a registered version the champion, after the trainer's load and smoke check.

    Refuses a version below the threshold unless --force; the API serves it within one poll.

    Example: irisctl promote 3
    """
    from . import ops

    result = ops.promote(load_config(ctx), version, force)
    output.show(output.AliasView(result), json_out)


@app.command()
def rollback(ctx: typer.Context, json_out: bool = JsonOpt) -> None:
    """Move the champion back to the previous champion (same check as `promote`).

    Example: irisctl rollback
    """
    from . import ops

    result = ops.promote(load_config(ctx), None)
    output.show(output.AliasView(result), json_out)


@app.command()
def logs(
    ctx: typer.Context,
    service: str = typer.Argument(
        ...,
        metavar="SERVICE",
        help="mlflow, trainer, model-api, monitor, prometheus, alertmanager; scheduler (local), "
        "minio (Kubernetes).",
    ),
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing new lines."),
    tail: int = typer.Option(
        None, "--tail", "-n", min=0, metavar="N", help="Only the last N lines."
    ),
) -> None:
    """Print a service's log (`trainer`: the last training run).

    Example: irisctl logs model-api -f
    """
    from . import ops

    for line in ops.logs(load_config(ctx), service, follow, tail):
        print(output.plain(line), flush=True)  # no escape sequence reaches the terminal


@app.command()
def down(
    ctx: typer.Context,
    purge: bool = typer.Option(
        False, "--purge", help="Also delete models, runs, metrics and logs."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before --purge."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would go."),
    cluster: bool = typer.Option(False, "--cluster", help="minikube: also stop the cluster."),
) -> None:
    """Stop the stack. Data is kept unless --purge.

    On Kubernetes: deletes the workloads and keeps the PVCs and the Secret; --purge deletes the
    namespace.

    Example: irisctl down --dry-run
    """
    from . import ops

    config = load_config(ctx)
    if dry_run:
        for line in ops.down(config, purge, dry_run=True, cluster=cluster) or ["nothing to do"]:
            output.console.print(line)
        return
    if purge and not yes:
        if not sys.stdin.isatty():
            raise BadInput(
                "--purge deletes every model, run and metric; without a terminal it needs --yes"
            )
        typer.confirm(ops.purge_question(config), abort=True)
    waits = output.Reporter(to_stderr=True).progress
    for line in ops.down(config, purge, cluster=cluster, progress=waits) or ["nothing was running"]:
        output.console.print(line)


@app.command("port-forward")
def port_forward(ctx: typer.Context) -> None:
    """Forward 127.0.0.1 ports to the services' pods until Ctrl-C (Kubernetes targets).

    `up` starts one in the background; use this to run one in the foreground instead.

    Example: irisctl port-forward
    """
    import signal
    import threading
    import time

    from . import ops

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    forwards = ops.port_forward(load_config(ctx), lambda msg: output.err_console.print(msg))
    for f in forwards:
        output.console.print(f"forwarding 127.0.0.1:{f.port}")
    try:
        # Not stop.wait(): SIGTERM delivered to another thread does not wake a lock wait in
        # this one, so the forwarder outlived `up`'s stop now and then (held its ports).
        while not stop.is_set():
            time.sleep(0.2)
    finally:
        for f in forwards:
            f.stop()


@app.command()
def render(ctx: typer.Context, json_out: bool = JsonOpt) -> None:
    """Print the configuration `up` would apply for the target (like `helm template`).

    Example: irisctl render > stack.txt
    """
    from . import ops

    output.show(output.RenderView(ops.render(load_config(ctx))), json_out)


@app.command()
def build(
    ctx: typer.Context,
    base_image: str = typer.Option(
        None, "--base-image", help="Base image with Python 3.11+ [python:3.12-slim]."
    ),
    json_out: bool = JsonOpt,
) -> None:
    """Build the services image into the target's Docker engine (minikube's for minikube).

    The tag is a hash of the build context, so a build is skipped when nothing changed.

    Example: irisctl build --json
    """
    from . import ops

    report = reporter(json_out)
    result = ops.build(load_config(ctx), base_image, report.line)
    output.show(output.BuildView(result), json_out)


@app.command()
def doctor(ctx: typer.Context, json_out: bool = JsonOpt) -> None:
    """Preflight checks, each with its fix. Exit 1 if a required check fails.

    Example: irisctl doctor
    """
    from . import ops

    checks = ops.doctor(load_config(ctx))
    output.show(output.DoctorView(checks), json_out)
    if any(c.level == "fail" for c in checks):
        raise typer.Exit(EXIT_FAILED)


def main() -> None:
    """Console-script entry point."""
    app()
