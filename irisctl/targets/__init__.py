"""The target factory: the only code that knows the targets' names."""

from __future__ import annotations

import shutil
from typing import Any

from ..errors import BadInput
from ..settings import Config
from .base import Target

NAMES = ("local", "minikube", "kubernetes")


def choose(config: Config, recorded: dict[str, Any] | None) -> tuple[Target, str]:
    """The target to act on, and why: flag/env/config, then the running stack's, then auto."""
    name = config["target"]
    if name != "auto":
        reason = f"--target from {config.source('target')}"
    elif recorded and recorded.get("target"):
        name, reason = recorded["target"], "the stack of this IRISCTL_HOME was brought up with it"
    elif shutil.which("minikube"):
        name, reason = "minikube", "minikube is on PATH (--target local for local processes)"
    else:
        name, reason = "local", "no minikube on PATH, so the embedded default"
    return build(name, config), reason


def build(name: str, config: Config) -> Target:
    """Construct the named target."""
    if name == "local":
        from .local import LocalTarget

        return LocalTarget(config)
    if name in ("minikube", "kubernetes"):
        from .kube import KubeTarget

        return KubeTarget(config, name)
    raise BadInput(f"unknown target {name!r}", f"choose one of: {', '.join(NAMES)}")
