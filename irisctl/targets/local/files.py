"""The files the local target renders and writes: supervisord's config, Prometheus' config and
rules, Alertmanager's config; and, between a running config and a wanted one, what changed."""

from __future__ import annotations

import os
import shlex

from iris_services.common.signing import write_key_file

from ... import render as templates
from ...errors import BadInput
from .layout import Layout
from .programs import programs

RULES_TEMPLATE = "prometheus/alerts.yml"
_MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to 108 bytes


def render(layout: Layout) -> dict[str, str]:
    """Every file ``up`` writes (supervisord, Prometheus, rules, Alertmanager), by name."""
    table = [
        {**p.__dict__, "command": shlex.join(p.command).replace("%", "%%")}
        for p in programs(layout)
    ]
    alertmanager = layout.alerting
    ports = layout.config.ports
    rules = templates.live_accuracy_window(
        templates.read(RULES_TEMPLATE), layout.config["live_accuracy_window"]
    )
    files = {
        "supervisord.conf": templates.render(
            "local/supervisord.conf.j2",
            home=layout.home,
            run_dir=layout.run_dir,
            logs_dir=layout.logs_dir,
            programs=table,
        ),
        "prometheus.yml": templates.prometheus_config(
            scrape_interval=layout.config["scrape_interval"],
            rules_file=str(layout.run_dir / "alerts.yml"),
            alertmanager=f"127.0.0.1:{ports['alertmanager']}" if alertmanager else None,
            api=f"127.0.0.1:{ports['api']}",
            monitor=f"127.0.0.1:{ports['monitor']}",
            prometheus=f"127.0.0.1:{ports['prometheus']}",
        ),
        "alerts.yml": templates.cap_for(
            templates.runbooks_at(rules, layout.endpoint("model-api")),
            layout.config["alert_for_max"],
        ),
    }
    if alertmanager:
        files["alertmanager.yml"] = templates.render(
            "prometheus/alertmanager.yml.j2",
            webhook_url=layout.config["alert_webhook_url"],
            webhook_url_file=None,
        )
    return files


def write(layout: Layout, files: dict[str, str]) -> None:
    """Write the rendered files (0600) and make the directories (0700) and the signing key."""
    sock = layout.run_dir / "supervisor.sock"
    if len(str(sock)) > _MAX_SOCKET_PATH:
        raise BadInput(
            f"IRISCTL_HOME is too long for a unix socket: {sock}",
            "set IRISCTL_HOME to a shorter path",
        )
    dirs = (layout.run_dir, layout.logs_dir, layout.data_dir, layout.data_dir / "artifacts")
    for d in (*dirs, layout.feedback_spool_dir):
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
    layout.home.chmod(0o700)
    write_key_file(layout.signing_key_file)
    for name, text in files.items():  # 0600 whatever the umask: alertmanager.yml holds
        fd = os.open(layout.run_dir / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # the webhook URL, a credential
        with os.fdopen(fd, "w") as out:
            out.write(text)


def changed_settings(running: str, wanted: str) -> list[str]:
    """What differs between two rendered supervisord configs, in words: the program and the
    setting (``model-api: IRIS_API_WORKERS 2 → 4``)."""
    import configparser

    def parse(text: str) -> configparser.RawConfigParser:
        parser = configparser.RawConfigParser(strict=False)
        parser.read_string(text)
        return parser

    old, new = parse(running), parse(wanted)
    out = []
    for section in sorted(set(old.sections()) | set(new.sections())):
        name = section.removeprefix("program:")
        if not old.has_section(section) or not new.has_section(section):
            out.append(f"{name} {'added' if new.has_section(section) else 'removed'}")
            continue
        for key in sorted(set(old[section]) | set(new[section])):
            before, after = old[section].get(key, "-"), new[section].get(key, "-")
            if before == after:
                continue
            if key == "environment":
                envs = _env_pairs(before), _env_pairs(after)
                for var in sorted(set(envs[0]) | set(envs[1])):
                    if envs[0].get(var) != envs[1].get(var):
                        out.append(f"{name}: {var} {envs[0].get(var)} → {envs[1].get(var)}")
            elif key == "command":
                a, b = before.split(), after.split()
                out.append(
                    f"{name}: {' '.join(t for t in a if t not in b) or '-'} → "
                    f"{' '.join(t for t in b if t not in a) or '-'}"
                )
            else:
                out.append(f"{name}: {key} {before} → {after}")
    return out


def _env_pairs(text: str) -> dict[str, str]:
    lexer = shlex.shlex(text, posix=True)
    lexer.whitespace, lexer.whitespace_split = ",", True  # KEY="v, with commas",KEY2="v2"
    pairs = {}
    for item in lexer:
        key, _, value = item.partition("=")
        pairs[key] = value
    return pairs
