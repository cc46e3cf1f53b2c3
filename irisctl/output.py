"""Renderers: each command's result is printed once, by ``show``: as JSON (``--json``) or as
rich text. One view class per result owns both shapes (``to_json`` and ``text``)."""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from .batch import Summary
    from .clients.mlflow import ModelInfo
    from .clients.prometheus import Alert
    from .clients.web import Feedback
    from .feedback import Summary as FeedbackSummary
    from .ops import (
        AliasResult,
        BuildResult,
        ChampionPeriod,
        Check,
        HistoryRow,
        StatusResult,
        Traffic,
        TrainResult,
        UpResult,
    )

console = Console()
err_console = Console(stderr=True)

# C0 (but tab and newline), DEL and C1: an escape sequence in a tag or an error text must not
# reach the terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain(value: object) -> str:
    """Text from elsewhere (MLflow tags, run names and errors, Kubernetes events, Prometheus
    labels), for printing: control characters stripped."""
    return _CONTROL.sub("", str(value))


def safe(value: object) -> str:
    """``plain`` and escaped, to put inside our Rich markup: ``[bold]...`` in a run name is
    printed as it is, never interpreted."""
    return escape(plain(value))


_STATE_STYLE = {
    "running": "green",
    "healthy": "green",
    "firing": "red",
    "pending": "yellow",
    "inactive": "dim",
    "absent": "dim",
    "exited": "dim",
    "stopped": "yellow",
    "unhealthy": "red",
    "fatal": "red",
    "backoff": "red",
    "starting": "yellow",
    "ok": "green",
    "warn": "yellow",
    "fail": "red",
}


def _styled(state: str) -> str:
    style = _STATE_STYLE.get(state, "")
    return f"[{style}]{state}[/]" if style else safe(state)


def print_json(data: Any) -> None:
    """Plain JSON on stdout, for scripts."""
    if is_dataclass(data) and not isinstance(data, type):
        data = asdict(data)
    print(json.dumps(data, indent=2, default=str))


class View(Protocol):
    """A command's result as it is shown: its JSON shape (for ``--json``) and its rich text."""

    def to_json(self) -> Any: ...

    def text(self) -> None: ...


def show(view: View, json_out: bool) -> None:
    """Print a command's result once: JSON for scripts, else rich text."""
    if json_out:
        print_json(view.to_json())
    else:
        view.text()


def age(ts: float | None) -> str:
    """'3h 12m ago' style, from unix seconds."""
    if ts is None:
        return "-"
    seconds = max(0, int(time.time() - ts))
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, secs = divmod(rem, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def champion_line(m: ModelInfo) -> str:
    """'Champion: iris-classifier v3 (@champion) accuracy 0.967, registered … (2h 5m ago)'."""
    acc = f"{m.accuracy:.3f}" if m.accuracy is not None else "?"
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(m.registered_at))
    return (
        f"Champion: [bold]{safe(m.name)} v{safe(m.version)}[/] (@{safe(m.alias)}) accuracy {acc}, "
        f"registered {when} ({age(m.registered_at)} ago)"
    )


def log_line(line: str, out: Console = console) -> None:
    """A service's JSON log line as 'time  message' (other lines verbatim)."""
    try:
        rec = json.loads(line)
    except ValueError:
        rec = None
    if not isinstance(rec, dict) or "msg" not in rec:
        out.print(f"  │ {plain(line)}", markup=False, highlight=False, style="dim")
        return
    level = rec.get("level", "info")
    style = {"error": "red", "warning": "yellow"}.get(level, "")
    ts = str(rec.get("ts", ""))[11:19]
    text = plain(str(rec["msg"]).splitlines()[0]) if rec["msg"] else ""
    out.print(f"  [dim]│ {safe(ts)}[/] ", end="")
    out.print(text, markup=False, highlight=False, style=style or None)


class Reporter:
    """Progress of a long operation: steps and streamed log lines (to stderr under --json)."""

    def __init__(self, to_stderr: bool = False) -> None:
        self.console = err_console if to_stderr else console
        self.unfinished: dict[str, str] = {}  # step → its last state, until it is done

    def progress(self, step: str, state: str) -> None:
        done = state in ("healthy", "already running", "restarted") or state.startswith("serving")
        if done:
            self.unfinished.pop(step, None)
        else:
            self.unfinished[step] = state
        mark = "[green]✓[/]" if done else "[dim]…[/]"
        self.console.print(f"{mark} {safe(step):<12} {safe(state)}", highlight=False)

    def line(self, line: str) -> None:
        log_line(line, self.console)


@dataclass
class UpView:
    """``up``: what it did and where the services are."""

    result: UpResult

    def to_json(self) -> Any:
        return asdict(self.result)

    def text(self) -> None:
        result = self.result
        console.print(
            f"\n[bold]irisctl is up[/] on the [bold]{result.target}[/] target "
            f"({safe(result.reason)})."
        )
        if result.champion:
            console.print(champion_line(result.champion))
        width = max((len(name) for name in result.urls), default=0) + 2
        for name, url in result.urls.items():  # whole, never cut to the terminal: people copy them
            console.print(f"  {name:<{width}}{safe(url)}", highlight=False, soft_wrap=True)
        console.print(f"Try: [bold]{command_name()} predict 5.1 3.5 1.4 0.2[/]", highlight=False)
        activate = Path(sys.argv[0]).parent / "activate"
        if command_name() != "irisctl" and activate.exists():
            console.print(
                f"  (or put irisctl on your PATH: [bold]source {_short(activate)}[/])",
                highlight=False,
            )
        for w in result.warnings:
            err_console.print(f"[yellow]Warning:[/] {safe(w)}")


def command_name() -> str:
    """How to run this irisctl again: ``irisctl`` when PATH finds this one, else its path
    (``.venv/bin/irisctl`` after ``make up``, whose venv is not activated)."""
    me = Path(sys.argv[0])
    if me.name != "irisctl":  # python -m irisctl, or a test runner
        return "irisctl"
    found = shutil.which("irisctl")
    if found and Path(found).resolve() == me.resolve():
        return "irisctl"
    return _short(me)


def _short(path: Path) -> str:
    """``path`` relative to the working directory when it is under it, else absolute."""
    absolute = path.absolute()
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


_INTERRUPTED = {
    "train": "the training goes on as a job: follow it with `irisctl logs trainer -f`, "
    "stop it with `irisctl train --cancel`",
    "up": "the services that were starting go on starting (and a first training, if one had "
    "started, goes on as a job): see `irisctl status`; continue with `irisctl up`, or stop "
    "everything with `irisctl down`",
}


def interrupted(verb: str | None, unfinished: dict[str, str] | None = None) -> None:
    """What goes on after Ctrl-C, and how to follow or stop it."""
    what = _INTERRUPTED.get(verb or "")
    if unfinished:
        left = ", ".join(f"{step} ({state})" for step, state in unfinished.items())
        err_console.print(f"interrupted while: {safe(left)}", highlight=False, soft_wrap=True)
    err_console.print(f"interrupted{': ' + what if what else ''}", highlight=False, soft_wrap=True)


@dataclass
class TrainView:
    """``train --now``: the run, its accuracy and what the gate decided."""

    result: TrainResult

    def to_json(self) -> Any:
        return asdict(self.result)

    def text(self) -> None:
        s = self.result.summary
        if not self.result.ok or s is None:
            return
        if s.get("production_rows"):
            console.print(
                f"  trained on {s.get('iris_rows')} Iris rows and {s['production_rows']} "
                "labelled production rows",
                highlight=False,
            )
        if s.get("promoted"):
            console.print(
                f"[green]✓[/] run {safe(s['run_id'])}: accuracy {s['accuracy']:.3f} → "
                f"registered version {safe(s['version'])}, now [bold]champion[/]"
            )
            if s.get("scored_champion_accuracy") is not None:
                console.print(f"  {safe(s['reason'])}")
        else:
            console.print(
                f"[yellow]•[/] run {safe(s['run_id'])}: accuracy {s['accuracy']:.3f} → "
                f"not promoted ({safe(s['reason'])}); "
                f"champion stays v{safe(s.get('champion_version'))}"
            )
            if s.get("champion_validated") is not None:  # continuous validation
                verdict = (
                    "re-validated" if s["champion_validated"] else "[red]below the threshold[/]"
                )
                console.print(
                    f"  champion v{safe(s.get('champion_version'))} scored "
                    f"{s.get('scored_champion_accuracy', 0):.3f} on the same rows: {verdict}"
                )


@dataclass
class CancelView:
    """``train --cancel``: what was stopped, one line each."""

    stopped: list[str]

    def to_json(self) -> Any:
        return self.stopped

    def text(self) -> None:
        for text in self.stopped or ["no training ran"]:
            console.print(text, highlight=False)


@dataclass
class PredictionView:
    """``predict``: the API's answer, a table of classes and probabilities."""

    answer: dict[str, Any]

    def to_json(self) -> Any:
        return self.answer

    def text(self) -> None:
        answer = self.answer
        rows = answer.get("predictions") or [answer]
        model = answer.get("model", {})
        table = Table(title=f"{safe(model.get('name'))} v{safe(model.get('version'))}")
        table.add_column("#", justify="right")
        table.add_column("prediction", style="bold")
        for name in rows[0]["probabilities"]:
            table.add_column(safe(name), justify="right")
        for i, row in enumerate(rows, 1):
            table.add_row(
                str(i),
                safe(row["prediction"]),
                *(f"{p:.3f}" for p in row["probabilities"].values()),
            )
        console.print(table)
        ids = [(i, row["id"]) for i, row in enumerate(rows, 1) if row.get("id")]
        # Whole, one a line, never cut to the terminal's width: people copy them into `feedback`.
        for i, id_ in ids:
            label = "id" if len(rows) == 1 else f"{i:>{len(str(len(rows)))}}"
            console.print(f"{label} {safe(id_)}", highlight=False, soft_wrap=True)
        if ids:
            console.print(
                f"[dim]When you know the true class: {command_name()} feedback ID LABEL[/]",
                highlight=False,
            )
        for i, row in enumerate(rows, 1):
            for warning in row.get("warnings", []):
                err_console.print(f"[yellow]Warning:[/] row {i}: {safe(warning)}", highlight=False)


@dataclass
class StatusView:
    """``status``: services, the champion, recent runs, traffic and alerts."""

    result: StatusResult

    def to_json(self) -> Any:
        return self.result.as_json()

    def text(self) -> None:
        result = self.result
        console.print(f"Target: [bold]{result.target}[/]")
        table = Table("service", "state", "uptime", "pid", "detail")
        for s in result.services:
            uptime = age(time.time() - s.uptime_s) if s.uptime_s is not None else "-"
            table.add_row(s.name, _styled(s.state), uptime, str(s.pid or "-"), safe(s.detail))
        console.print(table)
        urls = {s.name: s.page or s.url for s in result.services if s.url}
        width = max((len(name) for name in urls), default=0) + 2
        for name, url in urls.items():  # whole, never cut to the terminal: people copy them
            console.print(f"  {name:<{width}}{safe(url)}", highlight=False, soft_wrap=True)
        if result.model:
            console.print(champion_line(result.model))
        elif result.model_error:
            console.print(f"Champion: [red]unknown[/] ({safe(result.model_error)})")
        else:
            console.print("Champion: [yellow]none yet[/] (run `irisctl train --now`)")
        if result.runs:
            runs = Table(
                "run", "started", "status", "accuracy", "gate", title="Recent training runs"
            )
            for r in result.runs:
                runs.add_row(
                    safe(r.run_id[:12]),
                    f"{age(r.started_at)} ago",
                    _styled(r.status.lower()),
                    f"{r.accuracy:.3f}" if r.accuracy is not None else "-",
                    safe(r.gate or "-"),
                )
            console.print(runs)
        for note in result.notes:
            console.print(f"[yellow]Note:[/] {safe(note)}")
        if result.traffic is not None:
            for line in traffic_lines(result.traffic):
                console.print(line)
        if result.alerts is None:
            console.print(f"Alerts: [yellow]unavailable[/] ({safe(result.alerts_reason)})")
        else:
            console.print(
                "Alerts: "
                + ", ".join(f"{safe(a['name'])} {_styled(a['state'])}" for a in result.alerts)
            )


@dataclass
class SecretsView:
    """``status --show-secrets``: the generated credentials."""

    found: dict[str, str]

    def to_json(self) -> Any:
        return self.found

    def text(self) -> None:
        found = self.found
        if not found:
            console.print("This target generated no credentials (its services bind 127.0.0.1).")
            return
        table = Table("key", "value", title="Generated credentials (keep them out of logs)")
        for key, value in found.items():
            table.add_row(safe(key), safe(value))
        console.print(table)


@dataclass
class AlertsView:
    """``alerts``: every rule, its state and, when active, its runbook."""

    found: list[Alert]

    def to_json(self) -> Any:
        return [asdict(a) for a in self.found]

    def text(self) -> None:
        found = self.found
        table = Table()
        table.add_column("alert", no_wrap=True)
        for name in ("state", "since", "severity", "summary"):
            table.add_column(name)
        for a in found:
            since = f"{age(a.since)} ago" if a.since else "-"
            table.add_row(
                safe(a.name), _styled(a.state), since, safe(a.severity), safe(a.summary or "-")
            )
        console.print(table)
        for a in found:
            if a.state != "inactive" and a.runbook_url:
                console.print(f"{safe(a.name)}: what to do → {safe(a.runbook_url)}")


_SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], low: float, high: float = 1.0) -> str:
    """One block character per value, scaled between ``low`` and ``high``."""
    span = max(high - low, 1e-9)
    out = []
    for v in values:
        level = round((min(max(v, low), high) - low) / span * (len(_SPARKS) - 1))
        out.append(_SPARKS[level])
    return "".join(out)


@dataclass
class HistoryView:
    """``history``: the last runs with a sparkline, then the champion periods (read only for
    the text: ``--json`` prints the runs alone)."""

    rows: list[HistoryRow]
    plot: Path | None
    periods: Callable[[], list[ChampionPeriod]]

    def to_json(self) -> Any:
        return [asdict(r) for r in self.rows]

    def text(self) -> None:
        self._runs()
        _champion_periods(self.periods())

    def _runs(self) -> None:
        rows, plot = self.rows, self.plot
        if not rows:
            console.print("No training runs yet: run `irisctl train --now`.")
            return
        # 80 columns hold the run's time, id, status, accuracy, version (★ the champion) and
        # the rows it trained on (Iris + labelled production rows, whole).
        table = Table(
            "started",
            "run",
            "status",
            "accuracy",
            "registered",
            caption="★ the champion · rows: Iris rows + labelled production rows",
        )
        table.add_column("rows", no_wrap=True)
        for r in rows:
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started_at))
            acc = f"{r.accuracy:.3f}" if r.accuracy is not None else "-"
            version = f"v{safe(r.registered_version)}" if r.registered_version else "no"
            table.add_row(
                started,
                safe(r.run_id[:12]),
                _styled(r.status.lower()),
                acc,
                version + (" [green]★[/]" if r.champion else ""),
                _dataset_rows(r),
            )
        console.print(table)
        scores = [r.accuracy for r in rows if r.accuracy is not None]
        if scores:
            low = min(0.8, *scores)
            console.print(f"accuracy {sparkline(scores, low)}  ({low:.2f} … 1.00, oldest → newest)")
        if plot is not None:
            console.print(f"wrote {safe(plot)}")


def _dataset_rows(r: HistoryRow) -> str:
    """'150+1,234': the Iris rows and the labelled production rows a run trained and was
    scored on; nothing for runs from before they were logged."""
    if r.iris_rows is None:
        return ""
    return f"{r.iris_rows:,}+{r.production_rows or 0:,}"


def _champion_periods(periods: list[ChampionPeriod]) -> None:
    """The champion periods under ``history``'s runs."""
    if not periods:
        return
    table = Table("champion", "from", "until", "for", "became champion by", "ended by")
    for p in periods:
        end = p.end if p.end is not None else time.time()
        table.add_row(
            f"v{safe(p.version)}",
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(p.start)),
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(p.end)) if p.end else "now",
            age(time.time() - (end - p.start)),
            safe(p.reason),
            safe(p.ended_by or ""),
        )
    console.print(table)


@dataclass
class BuildView:
    """``build``: each image, whether it was built, and which services use it."""

    result: BuildResult

    def to_json(self) -> Any:
        return self.result.images

    def text(self) -> None:
        result = self.result
        for tag, built in result.built.items():
            verb = "built" if built.built else "already present, not rebuilt"
            console.print(f"[green]✓[/] {tag} ({built.size_mb:.0f} MB) {verb} in {result.engine}")
            users = [service for service, t in result.images.items() if t == tag]
            console.print("  used by: " + ", ".join(users))


@dataclass
class DoctorView:
    """``doctor``: every check with its fix."""

    checks: list[Check]

    def to_json(self) -> Any:
        return [asdict(c) for c in self.checks]

    def text(self) -> None:
        checks = self.checks
        table = Table("check", "result", "detail", "fix")
        for c in checks:
            table.add_row(c.name, _styled(c.level), safe(c.detail), safe(c.fix))
        console.print(table)


def error(message: str, hint: str | None) -> None:
    # soft_wrap: one line each, whatever the width, so logs and pipes keep them whole.
    err_console.print(f"[red]Error:[/] {safe(message)}", highlight=False, soft_wrap=True)
    if hint:
        err_console.print(f"[dim]Hint:[/] {safe(hint)}", highlight=False, soft_wrap=True)


@dataclass
class AliasView:
    """``promote`` / ``rollback``: the move and whether the API serves it yet."""

    result: AliasResult

    def to_json(self) -> Any:
        return asdict(self.result)

    def text(self) -> None:
        result = self.result
        was = f"v{safe(result.from_version)}" if result.from_version else "none"
        console.print(
            f"[green]✓[/] {safe(result.alias)}: {was} → [bold]v{safe(result.to_version)}[/] "
            f"({safe(result.reason)}; "
            f"accuracy {result.accuracy:.3f} on the held-out rows)"
        )
        if not result.served:
            err_console.print(
                "[yellow]Warning:[/] the model API does not serve it yet; see `irisctl status`"
            )


# -- traffic: status lines and `top` ---------------------------------------------------------


def _psi_style(psi: float, threshold: float | None) -> str:
    limit = threshold or 0.2
    return "red" if psi > limit else "yellow" if psi > limit / 2 else "green"


def traffic_lines(t: Traffic) -> list[str]:
    """Drift per feature and the class mix, one line each (for ``status``)."""
    window = f"{t.window_rows:,.0f} rows" if t.window_rows is not None else "no window"
    if t.psi:
        drift = ", ".join(
            f"{safe(f)} [{_psi_style(v, t.psi_threshold)}]{v:.2f}[/]" for f, v in t.psi.items()
        )
        line = f"Drift (PSI vs training rows, {window}): {drift}"
    else:
        line = f"Drift: [dim]not measured[/] ({window})"
    mix = ", ".join(f"{safe(c)} {share:.0%}" for c, share in t.class_mix.items())
    return [
        line,
        f"Class mix ({t.mix_range}): {mix or '[dim]no predictions[/]'}",
        *_live_line(t),
        *(
            f"[yellow]Note:[/] {safe(m)}"
            for m in t.missing
            # status shows no request rates; its live-accuracy line says there are no labels
            if not m.startswith(("no requests", "no labels"))
        ),
    ]


def _live_style(t: Traffic) -> str:
    if t.live_accuracy is None or t.live_accuracy_threshold is None:
        return "bold"
    return "red" if t.live_accuracy < t.live_accuracy_threshold else "green"


def _live_line(t: Traffic) -> list[str]:
    """Live accuracy of the served version, for ``status`` (none without a served version)."""
    if not t.versions:
        return []
    head = f"Live accuracy (v{safe(t.versions[-1])}, last {safe(t.live_accuracy_window)}): "
    if t.live_accuracy is None:
        return [head + "[dim]no labels[/] (`irisctl feedback` sends them)"]
    return [
        head + f"[{_live_style(t)}]{t.live_accuracy:.1%}[/] of {_num(t.labels, ',.0f')} labels, "
        f"{_num(t.labels_per_hour, ',.0f')} labels/h"
    ]


def _num(value: float | None, fmt: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{fmt}}{suffix}"


def _bar(share: float, width: int = 20) -> str:
    filled = round(max(0.0, min(share, 1.0)) * width)
    return "█" * filled + "[dim]" + "·" * (width - filled) + "[/]"


def top_view(t: Traffic | None, source: str, interval: float, error: str | None = None) -> Any:
    """One screen of ``top``: load and latency, served version, class mix, drift, alerts."""
    from rich.console import Group

    stamp = time.strftime("%H:%M:%S")
    head = (
        f"[bold]irisctl top[/] — Prometheus {source}, every {interval:g}s — {stamp} — Ctrl-C quits"
    )
    if t is None:
        return Group(head, f"[red]{safe(error)}[/]", "[dim]retrying…[/]")
    api = Table(box=None, padding=(0, 2), title="model API", title_justify="left")
    for name in ("req/s", "errors (5xx)", "rejected (4xx)", "p50", "p99", "serving"):
        api.add_column(name, justify="right")
    api.add_row(
        _num(t.request_rate, ",.1f"),
        _num(None if t.error_ratio is None else t.error_ratio * 100, ".2f", "%"),
        _num(None if t.rejected_ratio is None else t.rejected_ratio * 100, ".2f", "%"),
        _num(t.p50_ms, ".1f", " ms"),
        _num(t.p99_ms, ".1f", " ms"),
        safe(", ".join(f"v{v}" for v in t.versions) or "-"),
    )
    served = f"v{safe(t.versions[-1])}, " if t.versions else ""
    live = Table(
        box=None,
        padding=(0, 2),
        title=f"live accuracy ({served}{safe(t.live_accuracy_window)})",
        title_justify="left",
    )
    for name in ("accuracy", "labels", "labels/h", "alert below"):
        live.add_column(name, justify="right")
    live.add_row(
        "-" if t.live_accuracy is None else f"[{_live_style(t)}]{t.live_accuracy * 100:.1f}%[/]",
        _num(t.labels, ",.0f"),
        _num(t.labels_per_hour, ",.0f"),
        _num(
            None if t.live_accuracy_threshold is None else t.live_accuracy_threshold * 100, "g", "%"
        ),
    )
    mix = Table(box=None, padding=(0, 2), title=f"class mix ({t.mix_range})", title_justify="left")
    mix.add_column("class")
    mix.add_column("share", justify="right")
    mix.add_column("")
    for name, share in t.class_mix.items():
        mix.add_row(safe(name), f"{share:.0%}", _bar(share))
    window = (
        f"[dim]window {_num(t.window_rows, ',.0f')} rows; IrisInputDrift above PSI "
        f"{_num(t.psi_threshold, 'g')} once it holds {_num(t.min_rows, ',.0f')}[/]"
    )
    drift = Table(box=None, padding=(0, 2), title="input drift", title_justify="left")
    for name in ("feature", "PSI", "", "out of range"):
        drift.add_column(name, justify="left" if name in ("feature", "") else "right")
    for feature in sorted(set(t.psi) | set(t.out_of_range)):
        psi = t.psi.get(feature)
        value = "-" if psi is None else f"[{_psi_style(psi, t.psi_threshold)}]{psi:.3f}[/]"
        scale = (t.psi_threshold or 0.2) * 2
        drift.add_row(
            safe(feature),
            value,
            _bar((psi or 0.0) / scale, 10),
            _num(t.out_of_range.get(feature), ",.0f"),
        )
    alerts = "alerts: " + (
        ", ".join(f"{safe(a['name'])} {_styled(a['state'])}" for a in t.alerts)
        or "[dim]no rules[/]"
    )
    notes = [f"[yellow]•[/] {safe(m)}" for m in t.missing]
    return Group(head, "", api, "", live, "", mix, "", drift, window, "", alerts, *notes)


@dataclass
class TrafficView:
    """``top --once`` / ``top --json``: one screen of traffic (``top`` alone redraws it live,
    see ``live_top``)."""

    traffic: Traffic
    source: str
    interval: float

    def to_json(self) -> Any:
        return asdict(self.traffic)

    def text(self) -> None:
        console.print(top_view(self.traffic, self.source, self.interval))


def live_top(read: Callable[[], Traffic], source: str, interval: float) -> None:
    """Redraw ``top`` every ``interval`` seconds until Ctrl-C; errors are shown, then retried."""
    from rich.live import Live

    from .errors import IrisctlError

    def view() -> Any:
        try:
            return top_view(read(), source, interval)
        except IrisctlError as exc:
            hint = f" — {exc.hint}" if exc.hint else ""
            return top_view(None, source, interval, f"{exc.message}{hint}")

    try:
        with Live(view(), console=console, auto_refresh=False, screen=False) as live:
            while True:
                time.sleep(interval)
                live.update(view(), refresh=True)
    except KeyboardInterrupt:
        pass  # the way out: no "interrupted", exit 0


@dataclass
class RenderView:
    """``render``: the files ``up`` would apply, as one stream (like ``helm template``)."""

    files: dict[str, str]

    def to_json(self) -> Any:
        return self.files

    def text(self) -> None:
        from .render import stream

        print(stream(self.files), end="")


class BatchProgress:
    """A rich progress bar on stderr for `predict --file --out` and `feedback --file`, only when
    stderr is a terminal: rows (or labels) done, per second and, for a file (its size is known),
    the bar and the ETA."""

    def __init__(self, source: str, unit: str = "rows") -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        from .stream import input_size

        self.total = input_size(source)
        self.started = time.monotonic()
        self.progress = Progress(
            BarColumn(),
            TextColumn(f"{{task.fields[rows]:,}} {unit}"),
            TextColumn(f"{{task.fields[rate]:,.0f}} {unit}/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
            disable=not err_console.is_terminal,
        )
        self.task = self.progress.add_task("scoring", total=self.total, rows=0, rate=0.0)

    def __enter__(self) -> BatchProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, rows: int, offset: int) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        self.progress.update(self.task, completed=offset, rows=rows, rate=rows / elapsed)


@dataclass
class BatchView:
    """``predict --file --out``: the one line a batch run ends with (on stderr: stdout may be
    the scores)."""

    summary: Summary

    def to_json(self) -> Any:
        return self.summary.as_json()

    def text(self) -> None:
        summary = self.summary
        classes = ", ".join(f"{name} {n:,}" for name, n in summary.classes.items())
        versions = safe(", ".join(f"v{v}" for v in summary.versions))
        line = (
            f"Scored {summary.rows:,} rows ({classes}); {summary.warned:,} with warnings; "
            f"{summary.seconds:.1f} s, {summary.rows_per_s:,.0f} rows/s; "
            f"model {versions}"
        )
        if summary.skipped:
            line += f"; {summary.skipped:,} bad rows skipped"
        if summary.out != "-":
            line += f" -> {safe(summary.out)}"
        err_console.print(line, highlight=False, soft_wrap=True)
        if summary.champion_changed:
            err_console.print(
                f"[yellow]Note:[/] the champion changed during the run ({versions}); "
                "each row's model_version says which one answered it",
                highlight=False,
            )


@dataclass
class FeedbackView:
    """``feedback ID LABEL``: what the API did with the label (``--json``: its answer)."""

    answer: Feedback
    id: str
    label: str

    def to_json(self) -> Any:
        return asdict(self.answer)

    def text(self) -> None:
        # An unknown id prints nothing here: the command ends with its error (exit 2).
        if self.answer.accepted:
            console.print(
                f"[green]✓[/] labelled {safe(self.label)}: {safe(self.id)}",
                highlight=False,
                soft_wrap=True,
            )
        elif self.answer.duplicates:
            console.print(
                f"[yellow]•[/] already labelled, so not counted again: {safe(self.id)}",
                highlight=False,
                soft_wrap=True,
            )


@dataclass
class FeedbackFileView:
    """``feedback --file``: the totals of the API's answers."""

    summary: FeedbackSummary

    def to_json(self) -> Any:
        return self.summary.as_json()

    def text(self) -> None:
        s = self.summary
        line = (
            f"Sent {s.labels:,} labels: {s.accepted:,} accepted, {s.duplicates:,} already "
            f"labelled (not counted again), {s.unknown:,} unknown; {s.seconds:.1f} s"
        )
        if s.skipped:
            line += f"; {s.skipped:,} bad rows skipped"
        console.print(line, highlight=False, soft_wrap=True)
        if s.unknown:
            first = ", ".join(s.unknown_ids[:3]) + (", …" if s.unknown > 3 else "")
            console.print(
                f"[yellow]Note:[/] {s.unknown:,} ids unknown to the API (not issued by it, or too "
                f"old to label): {safe(first)}",
                highlight=False,
                soft_wrap=True,
            )
