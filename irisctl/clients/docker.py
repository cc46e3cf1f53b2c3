"""Image builds through the Docker SDK (the engine on this machine, or minikube's)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import IrisctlError

# The modes every file and directory of a build context gets, whatever the caller's umask:
# docker-py's tar keeps each file's mode (docker/utils/build.py) and COPY keeps it, so under
# umask 077 the files would be root 0600 and the image's non-root user could not read its code.
# The image tags hash these too (irisctl/images.py), so an image built otherwise is never reused.
CONTEXT_FILE_MODE = 0o644
CONTEXT_DIR_MODE = 0o755


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
        with _engine_ca_only(environment) as tls:
            c = docker.from_env(environment=environment, timeout=30)
        if tls:
            c.api.trust_env = False  # later calls too: the engine's CA, not the environment's
        c.ping()
    except DockerException as exc:
        raise IrisctlError(
            f"the Docker engine is not reachable: {str(exc).splitlines()[0][:200]}",
            "start Docker (Debian: sudo apt-get install docker.io && sudo dockerd &)",
        ) from None
    return c


@contextlib.contextmanager
def _engine_ca_only(environment: dict[str, str] | None) -> Iterator[bool]:
    """With TLS (minikube's dockerd), trust only ``DOCKER_CERT_PATH/ca.pem``.

    requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` replace a session's ``verify``
    (psf/requests#3829), so behind a corporate proxy the engine's certificate "fails"; the SDK
    calls the engine already while it is built, hence the variables are hidden until then, and
    its session ignores the environment afterwards (True: TLS).
    """
    env = os.environ if environment is None else environment
    if not env.get("DOCKER_TLS_VERIFY") and not env.get("DOCKER_CERT_PATH"):
        yield False
        return
    hidden = {
        k: os.environ.pop(k) for k in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if k in os.environ
    }
    try:
        yield True
    finally:
        os.environ.update(hidden)


def build(
    engine: Any,
    files: dict[str, Path],
    tag: str,
    build_args: dict[str, str],
    on_line: Callable[[str], None],
) -> Built:
    """Build ``tag`` from ``files`` (path in the context → source file) unless it exists."""
    from docker.credentials.errors import StoreError
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
            dest.chmod(CONTEXT_FILE_MODE)
        for directory in (context, *(p for p in context.rglob("*") if p.is_dir())):
            directory.chmod(CONTEXT_DIR_MODE)
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
    except StoreError as exc:
        raise _credential_helper(exc) from None
    finally:
        shutil.rmtree(context, ignore_errors=True)
    return Built(tag, True, image.attrs.get("Size", 0) / 2**20)


def push(engine: Any, tag: str, on_line: Callable[[str], None]) -> None:
    """Push ``tag`` to its registry (the Docker engine's credentials, ``docker login``)."""
    from docker.credentials.errors import StoreError
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
    except StoreError as exc:
        raise _credential_helper(exc) from None


def _credential_helper(exc: Exception) -> IrisctlError:
    """docker-py runs the credential helper named in Docker's config.json (``credsStore``,
    ``credHelpers``) for every build and push; one missing from PATH raises StoreError."""
    config = os.path.join(os.environ.get("DOCKER_CONFIG") or "~/.docker", "config.json")
    return IrisctlError(
        f"Docker's credential helper failed: {str(exc).strip()[:300]}",
        f'install that helper, or remove "credsStore"/"credHelpers" from {config}',
    )
