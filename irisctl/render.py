"""Jinja2 rendering of the shipped templates (pure: data in, text out)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2


def templates_dir() -> Path:
    """The templates shipped in the wheel, or the repository's when running from source."""
    packaged = Path(__file__).parent / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "templates"


def supervisor_env(env: dict[str, str]) -> str:
    """Format an environment for supervisord's ``environment=`` (quoted, escaped)."""
    parts = []
    for key, value in env.items():
        escaped = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
        parts.append(f'{key}="{escaped}"')
    return ",".join(parts)


@cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["supervisor_env"] = supervisor_env
    return env


def render(name: str, **context: Any) -> str:
    """Render ``templates/<name>`` with ``context``; a missing variable is an error."""
    return _env().get_template(name).render(**context)


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(duration: str) -> float:
    """Prometheus duration ('5m', '1h30m', '0s') in seconds."""
    import re

    total = 0.0
    for number, unit in re.findall(r"([0-9]+)(ms|s|m|h|d)", duration):
        total += int(number) * _UNITS[unit]
    return total


def cap_for(rules_text: str, cap: str) -> str:
    """The rules with every ``for:`` longer than ``cap`` shortened to it (verbatim if no cap)."""
    if not cap:
        return rules_text
    import yaml

    rules = yaml.safe_load(rules_text)
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule and _seconds(rule["for"]) > _seconds(cap):
                rule["for"] = cap
    header = f"# Rendered by irisctl with every `for:` capped at {cap} (alert_for_max).\n"
    return header + yaml.safe_dump(rules, sort_keys=False, width=100)


LIVE_ACCURACY_ALERT = "IrisLiveAccuracyLow"
LIVE_ACCURACY_RANGE = "[1h]"  # as written in that rule: the default live_accuracy_window


def live_accuracy_window(rules_text: str, window: str) -> str:
    """The rules with IrisLiveAccuracyLow's ``[1h]`` ranges set to ``window`` (the setting
    live_accuracy_window); every other character verbatim, the other rules' ranges included."""
    import re

    start = re.search(rf"^ *- alert: {LIVE_ACCURACY_ALERT}$", rules_text, re.MULTILINE)
    if start is None:
        raise ValueError(f"the rules have no {LIVE_ACCURACY_ALERT}")
    end = re.compile(r"^ *- (alert|record|name): ", re.MULTILINE).search(rules_text, start.end())
    stop = end.start() if end else len(rules_text)
    rule = rules_text[start.start() : stop]
    if LIVE_ACCURACY_RANGE not in rule:
        raise ValueError(f"{LIVE_ACCURACY_ALERT} has no {LIVE_ACCURACY_RANGE} range to render")
    rule = rule.replace(LIVE_ACCURACY_RANGE, f"[{window}]")
    return rules_text[: start.start()] + rule + rules_text[stop:]


def stream(files: dict[str, str]) -> str:
    """Rendered files as one YAML stream, like ``helm template``: each file starts a document
    (``---``) under a ``# Source:`` comment, so ``render | kubectl apply -f -`` sees exactly the
    documents the files hold (a file's own ``---`` separators are kept)."""
    parts = []
    for name, text in files.items():
        parts.append(f"---\n# Source: {name}\n{text}")
        if not text.endswith("\n"):
            parts.append("\n")
    return "".join(parts)


RUNBOOKS_AT = "http://127.0.0.1:8080/runbooks"  # as written in the rules file


def runbooks_at(rules_text: str, api_url: str) -> str:
    """The rules with each ``runbook_url`` on the model API at ``api_url`` (it serves them)."""
    return rules_text.replace(f"{RUNBOOKS_AT}#", f"{api_url}/runbooks#")


def read(name: str) -> str:
    """A shipped file, verbatim."""
    return (templates_dir() / name).read_text()


# The scrape jobs of every target's Prometheus; the rules (``up{job=…}``) and ``top`` name them.
API_JOB = "iris-model-api"
MONITOR_JOB = "iris-monitor"
PROMETHEUS_JOB = "prometheus"


@dataclass(frozen=True)
class DnsTargets:
    """A scrape job's targets from DNS: every A record of ``name`` (a headless Service's pods),
    each on ``port``."""

    name: str
    port: int


def prometheus_config(
    scrape_interval: str,
    rules_file: str,
    alertmanager: str | None,
    api: str | DnsTargets,
    monitor: str,
    prometheus: str,
) -> str:
    """``prometheus.yml`` for any target: the same jobs, the target's addresses (host:port, or
    :class:`DnsTargets`)."""
    return render(
        "prometheus/prometheus.yml.j2",
        scrape_interval=scrape_interval,
        rules_file=rules_file,
        alertmanager=alertmanager,
        scrape_targets={API_JOB: api, MONITOR_JOB: monitor, PROMETHEUS_JOB: prometheus},
    )
