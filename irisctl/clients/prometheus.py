"""Alert rules and their states from Prometheus' HTTP API.

``/api/v1/rules`` is the one endpoint that reports every alerting rule, inactive ones included,
with when each alert became active and its rendered annotations; prometheus-api-client only
wraps PromQL queries (``ALERTS`` knows neither inactive rules nor annotations), so this reads the
endpoint with httpx.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from ..errors import IrisctlError

_ORDER = {"inactive": 0, "pending": 1, "firing": 2}


@dataclass(frozen=True)
class Alert:
    """One alerting rule and its state (the most severe of its alerts)."""

    name: str
    state: str  # inactive, pending, firing
    severity: str = ""
    since: float | None = None  # unix seconds the alert became active
    summary: str = ""
    description: str = ""
    runbook_url: str = ""
    labels: dict[str, str] = field(default_factory=dict)


def alerts(url: str, timeout_s: float = 3.0) -> list[Alert]:
    """Every alerting rule Prometheus has loaded, with its current state."""
    try:
        resp = httpx.get(f"{url}/api/v1/rules", params={"type": "alert"}, timeout=timeout_s)
        resp.raise_for_status()
        groups = resp.json()["data"]["groups"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise IrisctlError(f"Prometheus at {url} is not reachable: {type(exc).__name__}") from None
    return [
        _alert(rule) for group in groups for rule in group["rules"] if rule["type"] == "alerting"
    ]


def _alert(rule: dict[str, Any]) -> Alert:
    active = sorted(rule.get("alerts", []), key=lambda a: -_ORDER.get(a.get("state", ""), 0))
    first = active[0] if active else {}
    # An inactive rule has only its annotation templates: show nothing rather than "{{ $value }}".
    annotations = first.get("annotations", {})
    labels = first.get("labels") or {}
    return Alert(
        name=rule["name"],
        state=rule.get("state", "inactive"),
        severity=rule.get("labels", {}).get("severity", ""),
        since=_timestamp(first.get("activeAt")),
        summary=annotations.get("summary", ""),
        description=annotations.get("description", ""),
        runbook_url=rule.get("annotations", {}).get("runbook_url", ""),
        labels={k: v for k, v in labels.items() if k not in ("alertname", "severity")},
    )


def _timestamp(value: str | None) -> float | None:
    if not value:
        return None
    # Prometheus: 2026-11-26T18:38:25.123456789Z; fromisoformat takes at most microseconds.
    head, _, frac = value.rstrip("Z").partition(".")
    text = head + (f".{frac[:6]}" if frac else "") + "+00:00"
    return datetime.fromisoformat(text).timestamp()


class Query:
    """Instant PromQL queries over one keep-alive connection (``with Query(url) as q: …``)."""

    def __init__(self, url: str, timeout_s: float = 3.0) -> None:
        self.url = url
        self._http = httpx.Client(base_url=url, timeout=timeout_s)

    def __enter__(self) -> Query:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def vector(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """The (labels, value) pairs of an instant query; NaN values are left out."""
        try:
            resp = self._http.get("/api/v1/query", params={"query": promql})
            resp.raise_for_status()
            result = resp.json()["data"]["result"]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise IrisctlError(
                f"Prometheus at {self.url} is not reachable: {type(exc).__name__}",
                "is it installed and running? `irisctl status` shows it "
                "(install: sudo apt-get install prometheus)",
            ) from None
        out = []
        for item in result:
            value = float(item["value"][1])
            if value == value:  # not NaN (a quantile of no requests)
                out.append((dict(item["metric"]), value))
        return out

    def scalar(self, promql: str) -> float | None:
        """The value of a query that yields at most one series, or None."""
        found = self.vector(promql)
        return found[0][1] if found else None

    def by(self, label: str, promql: str) -> dict[str, float]:
        """label value → value, of a query aggregated ``by (label)``."""
        return {m.get(label, ""): v for m, v in self.vector(promql)}

    def scrape_interval(self, job: str) -> str | None:
        """How often Prometheus scrapes ``job`` ("15s"), from its targets API; None when unknown.

        ``scrapeInterval`` is in ``/api/v1/targets`` since Prometheus 2.34 (Debian ships 2.42).
        """
        try:
            resp = self._http.get("/api/v1/targets", params={"state": "active"})
            resp.raise_for_status()
            targets = resp.json()["data"]["activeTargets"]
        except (httpx.HTTPError, ValueError, KeyError):
            return None
        return next(
            (t.get("scrapeInterval") for t in targets if t.get("scrapePool") == job),
            None,
        )
