"""The kubernetes target's images: built by this machine's Docker engine and pushed to
``--registry``. The engine is the Docker Engine API stand-in (docker_api.py), reached over HTTP
by the real docker SDK; it has the images already (tags follow content, so a build is skipped),
and its push answers as the engine streams a registry's answer."""

from __future__ import annotations

import pytest

from irisctl import images, settings
from irisctl.clients import docker as docker_client
from irisctl.errors import IrisctlError

REGISTRY = "registry.example/team"


def _tags() -> list[str]:
    return [
        f"{REGISTRY}/{repository}:{images.services_image_tag(image)}"
        for image, repository in images.BUILT_IMAGES.items()
    ]


def test_the_kubernetes_target_builds_here_and_pushes_to_its_registry(docker_api):
    docker_api.images.update(_tags())
    config = settings.load({"target": "kubernetes", "registry": REGISTRY + "/"}, recorded=None)
    lines: list[str] = []
    tag, where, _ = images.build_services_image(config, "kubernetes", None, lines.append)
    assert tag == f"{REGISTRY}/irisctl-services:{images.services_image_tag()}"
    assert docker_api.pushes == [tuple(t.rsplit(":", 1)) for t in _tags()]
    assert not [p for m, p, _ in docker_api.requests if m == "POST" and "/build" in p]
    assert f"The push refers to repository [{REGISTRY}/irisctl-services]" in lines
    assert any(": digest: sha256:" in line for line in lines)
    assert not any(line in ("Preparing", "Pushing", "Pushed") for line in lines)  # per layer
    assert where == "the local Docker engine"


def test_a_refused_push_is_a_clear_error(docker_api):
    docker_api.images.update(_tags())
    docker_api.deny = True
    with pytest.raises(IrisctlError) as err:
        docker_client.push(docker_client.client(), _tags()[0], lambda line: None)
    assert "denied: requested access to the resource is denied" in err.value.message
    assert "docker login" in (err.value.hint or "")
