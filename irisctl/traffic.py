"""The model API's traffic as Prometheus sees it (``status``, ``top``): the PromQL, beside the
Prometheus client, in one place."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .clients import prometheus
from .render import API_JOB


@dataclass
class Traffic:
    """The model API's traffic as Prometheus sees it now: load, latency, class mix, drift."""

    prometheus: str
    request_rate: float | None  # requests/s over ``rate_range``
    error_ratio: float | None  # share of 5xx answers
    rejected_ratio: float | None  # share of 4xx answers (bad input, too large)
    p50_ms: float | None
    p99_ms: float | None
    versions: list[str]  # the served version (two during a swap)
    class_mix: dict[str, float]  # share of the rows predicted as each class over ``mix_range``
    psi: dict[str, float]  # per feature, over the API's drift window
    window_rows: float | None
    min_rows: float | None  # IrisInputDrift waits for this many rows
    psi_threshold: float | None
    out_of_range: dict[str, float]  # values outside the training range since the API started
    alerts: list[dict[str, str]]
    rate_range: str
    mix_range: str
    # Feedback on the served version (the newest during a swap) over ``live_accuracy_window``:
    # None without labels (never 1.0 for no labels at all).
    live_accuracy: float | None = None
    labels: float | None = None  # labels in the window
    labels_per_hour: float | None = None
    live_accuracy_threshold: float | None = None
    live_accuracy_min_labels: float | None = None  # IrisLiveAccuracyLow waits for this many
    live_accuracy_window: str = "1h"
    missing: list[str] = field(default_factory=list)  # what has no data, and why

    def as_status(self) -> dict[str, Any]:
        """The part ``status --json`` shows."""
        return {
            "psi": self.psi,
            "window_rows": self.window_rows,
            "min_rows": self.min_rows,
            "psi_threshold": self.psi_threshold,
            "class_mix": self.class_mix,
            "mix_range": self.mix_range,
            "live_accuracy": self.live_accuracy,
            "labels_per_hour": self.labels_per_hour,
            "live_accuracy_window": self.live_accuracy_window,
            "missing": self.missing,
        }


@dataclass
class _Live:
    accuracy: float | None = None
    labels: float | None = None
    per_hour: float | None = None
    threshold: float | None = None
    min_labels: float | None = None


def _live(q: prometheus.Query, version: str | None, window: str) -> _Live:
    """Live accuracy of ``version`` over ``window``, as IrisLiveAccuracyLow computes it:
    1 - wrong / all labels, each the increase of iris_api_feedback_total over the window."""
    live = _Live(
        threshold=q.scalar("max(iris_api_live_accuracy_threshold)"),
        min_labels=q.scalar("max(iris_api_live_accuracy_min_labels)"),
    )
    if version is None:
        return live
    v = json.dumps(version)  # a PromQL string
    live.labels = q.scalar(f"sum(increase(iris_api_feedback_total{{version={v}}}[{window}]))")
    wrong = q.scalar(
        f'sum(increase(iris_api_feedback_total{{outcome="wrong",version={v}}}[{window}]))'
    )
    rate = q.scalar(f"sum(rate(iris_api_feedback_total{{version={v}}}[{window}]))")
    live.per_hour = rate * 3600 if rate is not None else None
    if live.labels:
        # No `wrong` series (or no increase of it) with labels in the window: none was wrong.
        live.accuracy = 1 - (wrong or 0.0) / live.labels
    return live


def traffic(
    prom_url: str, rate_range: str = "1m", mix_range: str = "5m", live_window: str = "1h"
) -> Traffic:
    """Query Prometheus for the API's traffic; IrisctlError when Prometheus does not answer."""
    r, m = rate_range, mix_range
    with prometheus.Query(prom_url) as q:
        total = q.scalar(f"sum(rate(iris_api_requests_total[{r}]))")
        errors = q.scalar(f'sum(rate(iris_api_requests_total{{status=~"5.."}}[{r}]))')
        rejected = q.scalar(f'sum(rate(iris_api_requests_total{{status=~"4.."}}[{r}]))')
        buckets = f"sum by (le) (rate(iris_api_request_duration_seconds_bucket[{r}]))"
        p50 = q.scalar(f"histogram_quantile(0.5, {buckets})")
        p99 = q.scalar(f"histogram_quantile(0.99, {buckets})")
        versions = q.by("version", "max by (version) (iris_api_model_version_info) == 1")
        mix = q.by("class", f"sum by (class) (increase(iris_api_predictions_total[{m}]))")
        psi = q.by("feature", "max by (feature) (iris_api_feature_psi)")
        rows = q.scalar("sum(iris_api_drift_window_rows)")
        min_rows = q.scalar("max(iris_api_drift_min_window_rows)")
        threshold = q.scalar("max(iris_api_drift_psi_threshold)")
        loaded = q.scalar("min(iris_api_drift_reference_loaded)")
        outside = q.by("feature", "sum by (feature) (iris_api_inputs_out_of_range_total)")
        # rate() needs two samples: one scrape since the API served shows counters, not rates.
        counted = q.scalar("count(iris_api_requests_total)") if total is None else None
        interval = q.scrape_interval(API_JOB) if counted else None
        served = _by_number(versions)
        live = _live(q, served[-1] if served else None, live_window)
    found = prometheus.alerts(prom_url)
    missing = []
    if total is None and counted:
        apart = f"{_seconds(interval)} apart" if interval else "one scrape interval apart"
        missing.append(f"request rates need two scrapes, {apart}")
    elif total is None:
        missing.append(
            "no request metrics yet: Prometheus has not scraped the model API since it served "
            "(if this lasts, `irisctl logs prometheus`)"
        )
    elif total == 0:
        missing.append(f"no requests in the last {r}")
    if loaded == 0:
        missing.append(
            "no drift reference loaded: right after a new champion the API fetches its "
            "reference profile, and Prometheus sees it at its next scrape; if this lasts, the "
            "champion has no profile or the API could not fetch it (`irisctl logs model-api`)"
        )
    elif rows is not None and min_rows is not None and rows < min_rows:
        missing.append(f"the drift window holds {rows:.0f} rows; alerts wait for {min_rows:.0f}")
    if served and not live.labels:
        missing.append(
            f"no labels for v{served[-1]} in the last {live_window}: live accuracy needs "
            "`irisctl feedback`"
        )
    elif served and live.labels and live.min_labels and live.labels < live.min_labels:
        missing.append(
            f"v{served[-1]} has {live.labels:.0f} labels in the last {live_window}; "
            f"IrisLiveAccuracyLow waits for {live.min_labels:.0f}"
        )
    mix_total = sum(mix.values())
    return Traffic(
        prometheus=prom_url,
        request_rate=total,
        # No 5xx series at all is no 5xx answer: 0 once there are requests.
        error_ratio=(errors or 0.0) / total if total else None,
        rejected_ratio=(rejected or 0.0) / total if total else None,
        p50_ms=p50 * 1000 if p50 is not None else None,
        p99_ms=p99 * 1000 if p99 is not None else None,
        versions=served,
        class_mix={c: n / mix_total for c, n in sorted(mix.items())} if mix_total else {},
        psi=dict(sorted(psi.items())),
        window_rows=rows,
        min_rows=min_rows,
        psi_threshold=threshold,
        out_of_range=dict(sorted(outside.items())),
        alerts=[{"name": a.name, "state": a.state} for a in found],
        rate_range=r,
        mix_range=m,
        live_accuracy=live.accuracy,
        labels=live.labels,
        labels_per_hour=live.per_hour,
        live_accuracy_threshold=live.threshold,
        live_accuracy_min_labels=live.min_labels,
        live_accuracy_window=live_window,
        missing=missing,
    )


def _by_number(versions: dict[str, float]) -> list[str]:
    return sorted(versions, key=lambda v: int(v) if v.isdigit() else 0)


def _seconds(duration: str) -> str:
    """Prometheus' "15s" as people write it: "15 s" (and "1m" as "1 min")."""
    number, unit = duration[:-1], duration[-1]
    if number.isdigit() and unit in "sm":
        return f"{number} {'s' if unit == 's' else 'min'}"
    return duration
