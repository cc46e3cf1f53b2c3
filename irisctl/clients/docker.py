"""Image builds through the Docker SDK (the engine on this machine, or minikube's)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import IrisctlError


@dataclass(frozen=True)
class Built:
    """An image and whether this call built it (False: the tag already existed)."""

    tag: str
    built: bool
    size_mb: float


def client(environment: dict[str, str] | None = None) -> Any:
    """A Docker client from the environment (``DOCKER_HOST`` …), or a clear error."""
    import docker
    from docker.errors import DockerException

    try:
        c = docker.from_env(environment=environment, timeout=30)
        c.ping()
    except DockerException as exc:
        raise IrisctlError(
            f"the Docker engine is not reachable: {str(exc).splitlines()[0][:200]}",
            "start Docker (Debian: sudo apt-get install docker.io && sudo dockerd &)",
        ) from None
    return c


def build(
    engine: Any,
    files: dict[str, Path],
    tag: str,
    build_args: dict[str, str],
    on_line: Callable[[str], None],
) -> Built:
    """Build ``tag`` from ``files`` (path in the context → source file) unless it exists."""
    from docker.errors import APIError, BuildError, ImageNotFound

    try:
        image = engine.images.get(tag)
        return Built(tag, False, image.attrs.get("Size", 0) / 2**20)
    except ImageNotFound:
        pass
    context = Path(tempfile.mkdtemp(prefix="irisctl-build-"))
    try:
        for name, source in files.items():
            dest = context / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)
        # Host networking: builds reach the package registries the way this machine does.
        for chunk in engine.api.build(
            path=str(context),
            tag=tag,
            buildargs=build_args,
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
            network_mode="host",
        ):
            if "stream" in chunk and chunk["stream"].strip():
                on_line(chunk["stream"].rstrip())
            if "error" in chunk:
                raise IrisctlError(
                    f"building {tag} failed: {chunk['error'].strip()[:500]}",
                    "see the build output above",
                )
        image = engine.images.get(tag)
    except (APIError, BuildError) as exc:
        raise IrisctlError(f"building {tag} failed: {exc}") from None
    finally:
        shutil.rmtree(context, ignore_errors=True)
    return Built(tag, True, image.attrs.get("Size", 0) / 2**20)


def push(engine: Any, tag: str, on_line: Callable[[str], None]) -> None:
    """Push ``tag`` to its registry (the Docker engine's credentials, ``docker login``)."""
    from docker.errors import APIError

    repository, _, version = tag.rpartition(":")
    try:
        for chunk in engine.api.push(repository, tag=version, stream=True, decode=True):
            if "error" in chunk:
                raise IrisctlError(
                    f"pushing {tag} failed: {chunk['error'].strip()[:300]}",
                    "is `docker login` done for that registry, and can this machine reach it?",
                )
            if chunk.get("status") and chunk.get("id") is None:
                on_line(chunk["status"])
    except APIError as exc:
        raise IrisctlError(f"pushing {tag} failed: {exc}") from None
