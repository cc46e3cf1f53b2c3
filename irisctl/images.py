"""The images irisctl builds, for every target that runs containers: their build contexts, tags
that follow their content, which image each service runs, and where they are built."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from . import render
from .settings import Config

if TYPE_CHECKING:
    from .clients.docker import Built


# The images irisctl builds: name → repository. model-api gets a slim image of its own (no MLflow,
# no scikit-learn: it serves ONNX graphs); the rest share the full services image.
BUILT_IMAGES = {"services": "irisctl-services", "model-api": "irisctl-model-api"}
# Which built image each service runs: the one statement of it (the manifests and `build` read it).
SERVICE_IMAGES = {
    "mlflow": "services",
    "trainer": "services",
    "monitor": "services",
    "model-api": "model-api",
}
# The Dockerfile, requirements and service packages of each image.
_IMAGE_FILES = {
    "services": ("Dockerfile", "requirements.txt", ("",)),
    "model-api": ("api.Dockerfile", "api-requirements.txt", ("__init__.py", "common/", "api/")),
}


def services_image_tag(image: str = "services") -> str:
    """A tag that changes with the image's content: a hash of its whole build context, the
    modes its files get included (an image whose files had other modes is never reused)."""
    from .clients.docker import CONTEXT_DIR_MODE, CONTEXT_FILE_MODE

    digest = hashlib.sha256(f"modes {CONTEXT_FILE_MODE:o} {CONTEXT_DIR_MODE:o}\0".encode())
    for name, path in build_context(image).items():
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def build_context(image: str = "services") -> dict[str, Path]:
    """An image's build context: path in the context → file, in a stable order."""
    docker = render.templates_dir() / "docker"
    import iris_services

    dockerfile, requirements, parts = _IMAGE_FILES[image]
    package = Path(iris_services.__file__).parent
    context = {"Dockerfile": docker / dockerfile, "requirements.txt": docker / requirements}
    # Code and the pages shipped beside it (api/runbooks.md), nothing a test run left behind.
    shipped = (p for p in package.rglob("*") if p.suffix in {".py", ".md"} and p.is_file())
    for source in sorted(p for p in shipped if "__pycache__" not in p.parts):
        relative = source.relative_to(package).as_posix()
        if any(relative.startswith(part) for part in parts):
            context[f"iris_services/{relative}"] = source
    return context


def build_images(
    config: Config, target: str, base_image: str | None, on_line: Callable[[str], None]
) -> tuple[dict[str, Built], str]:
    """Build every image where ``target`` runs it: (image → result with its tag, engine).

    minikube: inside its Docker (``minikube docker-env``); kubernetes: this machine's Docker,
    then pushed to ``registry``; local: this machine's Docker.
    """
    from .clients import docker, minikube

    env = minikube.docker_env(config["minikube_profile"]) if target == "minikube" else None
    engine = docker.client(env)
    args = {"BASE_IMAGE": base_image} if base_image else {}
    results = {}
    for image in BUILT_IMAGES:
        tag = image_tag(config, target, image)
        results[image] = docker.build(engine, build_context(image), tag, args, on_line)
        if target == "kubernetes" and config["registry"]:
            docker.push(engine, tag, on_line)
    return results, (env or {}).get("DOCKER_HOST") or "the local Docker engine"


def image_tag(config: Config, target: str, image: str) -> str:
    """The full tag of a built image on ``target`` (the registry's prefix on ``kubernetes``)."""
    registry = config["registry"].rstrip("/") if target == "kubernetes" else ""
    return f"{registry + '/' if registry else ''}{BUILT_IMAGES[image]}:{services_image_tag(image)}"


def service_tags(config: Config, target: str) -> dict[str, str]:
    """service → the tag of the image it runs on ``target``."""
    return {s: image_tag(config, target, image) for s, image in SERVICE_IMAGES.items()}


def build_services_image(
    config: Config, target: str, base_image: str | None, on_line: Callable[[str], None]
) -> tuple[str, str, Built]:
    """Build every image (``build_images``); (the services image's tag, engine, its result)."""
    results, where = build_images(config, target, base_image, on_line)
    return results["services"].tag, where, results["services"]
