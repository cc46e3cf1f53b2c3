"""Alert states from Prometheus, through prometheus-api-client."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import IrisctlError


@dataclass(frozen=True)
class AlertState:
    """One alert rule and its state: inactive, pending or firing."""

    name: str
    state: str


def alert_states(url: str, rule_names: list[str], timeout_s: float = 3.0) -> list[AlertState]:
    """The state of every rule in ``rule_names`` (rules absent from ALERTS are inactive)."""
    from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
    from urllib3.util.retry import Retry

    try:
        prom = PrometheusConnect(
            url=url, disable_ssl=True, timeout=int(max(1, timeout_s)), retry=Retry(total=0)
        )
        series = prom.custom_query("ALERTS")
    except (PrometheusApiClientException, OSError, ValueError) as exc:
        # requests' exceptions are OSErrors: refused, timed out, reset
        raise IrisctlError(f"Prometheus at {url} is not reachable: {type(exc).__name__}") from None
    states: dict[str, str] = {}
    for s in series:
        name = s["metric"].get("alertname", "")
        state = s["metric"].get("alertstate", "")
        if states.get(name) != "firing":
            states[name] = state
    return [AlertState(n, states.get(n, "inactive")) for n in rule_names]
