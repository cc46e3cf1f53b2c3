"""The services image: its build context, a tag that changes with it, and where it is built."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ... import render
from ...settings import Config

if TYPE_CHECKING:
    from ...clients.docker import Built


def services_image_tag() -> str:
    """A tag that changes with the image's content: a hash of its whole build context."""
    digest = hashlib.sha256()
    for name, path in build_context().items():
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def build_context() -> dict[str, Path]:
    """The services image's build context: path in the context → file, in a stable order."""
    docker = render.templates_dir() / "docker"
    import iris_services

    package = Path(iris_services.__file__).parent
    context = {"Dockerfile": docker / "Dockerfile", "requirements.txt": docker / "requirements.txt"}
    for source in sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts):
        context[f"iris_services/{source.relative_to(package)}"] = source
    return context


def build_services_image(
    config: Config, target: str, base_image: str | None, on_line: Callable[[str], None]
) -> tuple[str, str, Built]:
    """Build the services image where ``target`` runs it: (tag, engine, result).

    minikube: inside its Docker (``minikube docker-env``); kubernetes: this machine's Docker,
    then pushed to ``registry``; local: this machine's Docker.
    """
    from ...clients import docker, minikube

    env = minikube.docker_env(config["minikube_profile"]) if target == "minikube" else None
    engine = docker.client(env)
    registry = config["registry"].rstrip("/") if target == "kubernetes" else ""
    tag = f"{registry + '/' if registry else ''}irisctl-services:{services_image_tag()}"
    args = {"BASE_IMAGE": base_image} if base_image else {}
    built = docker.build(engine, build_context(), tag, args, on_line)
    if registry:
        docker.push(engine, tag, on_line)
    return tag, (env or {}).get("DOCKER_HOST") or "the local Docker engine", built
