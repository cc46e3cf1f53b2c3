"""The environment contract between the targets and the services: every ``IRIS_*`` variable a
target sets (the local target's supervisord programs, the Kubernetes ConfigMap and container
``env``) is one a service reads. A variable a service does not read is a setting that silently
does nothing: a typo, or a rename done on one side only.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from iris_services.common import signing
from irisctl import settings
from irisctl.targets.kube import KubeTarget
from irisctl.targets.local import LocalTarget

# Every optional variable set: the seed and the promotion tolerance are emitted only when given.
FLAGS = {"train_seed": 7, "promotion_tolerance": 0.01, "registry": "registry.example.test/team"}

# The modules whose settings objects the services build in main(); importing them runs nothing.
SETTINGS_MODULES = ("iris_services.common.settings", "iris_services.scheduler.__main__")

# Read with os.environ rather than through a settings object (a path, handed on to signing).
READ_DIRECTLY = {signing.KEY_FILE_ENV}


def _subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _names(alias: Any) -> list[str]:
    if isinstance(alias, str):
        return [alias]
    if isinstance(alias, AliasChoices):
        return [c for c in alias.choices if isinstance(c, str)]
    return []


def read_by_services() -> set[str]:
    """The environment variable names the services' settings objects read."""
    for module in SETTINGS_MODULES:
        importlib.import_module(module)
    classes = [c for c in _subclasses(BaseSettings) if c.__module__.startswith("iris_services.")]
    assert classes, "no settings objects found: SETTINGS_MODULES is out of date"
    read = set(READ_DIRECTLY)
    for cls in classes:
        for field in cls.model_fields.values():
            read.update(_names(field.validation_alias))
    return read


def local_env(tmp_path) -> dict[str, set[str]]:
    """program → the IRIS_* variables the local target gives it."""
    target = LocalTarget(settings.load(FLAGS, home=tmp_path))
    return {p.name: {k for k in p.env if k.startswith("IRIS_")} for p in target.programs()}


def kube_env(target_name: str, tmp_path) -> dict[str, set[str]]:
    """ConfigMap or container → the IRIS_* variables the rendered manifests set."""
    target = KubeTarget(settings.load(FLAGS, home=tmp_path), target_name)
    found: dict[str, set[str]] = {}
    for text in target.render().values():
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            name = f"{doc['kind']}/{doc['metadata']['name']}"
            if doc["kind"] in ("ConfigMap", "Secret"):
                keys = {**doc.get("data", {}), **doc.get("stringData", {})}
                found[name] = {k for k in keys if k.startswith("IRIS_")}
            for container in _containers(doc):
                env = {e["name"] for e in container.get("env", [])}
                found[f"{name}/{container['name']}"] = {k for k in env if k.startswith("IRIS_")}
    return found


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    pod = spec.get("template", {}).get("spec", {})
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def _unread(emitted: dict[str, set[str]]) -> dict[str, set[str]]:
    read = read_by_services()
    return {where: names - read for where, names in emitted.items() if names - read}


def test_every_iris_variable_the_local_target_sets_is_read_by_a_service(tmp_path):
    emitted = local_env(tmp_path)
    assert {"IRIS_SEED", "IRIS_PROMOTION_TOLERANCE", "IRIS_TRAIN_SCHEDULE"} <= set().union(
        *emitted.values()
    ), "the check sees the optional and the scheduler's variables"
    assert _unread(emitted) == {}


@pytest.mark.parametrize("target_name", ["minikube", "kubernetes"])
def test_every_iris_variable_the_kubernetes_manifests_set_is_read_by_a_service(
    target_name, tmp_path
):
    emitted = kube_env(target_name, tmp_path)
    assert {"IRIS_SEED", "IRIS_PROMOTION_TOLERANCE", "IRIS_API_WORKERS"} <= set().union(
        *emitted.values()
    ), "the check sees the ConfigMap and the containers' own variables"
    assert _unread(emitted) == {}


def test_the_services_read_what_the_check_compares_with():
    read = read_by_services()
    # One from each settings object and the one read directly: the check compares with them all.
    for name in (
        "IRIS_ACCURACY_THRESHOLD",
        "IRIS_TRAIN_LOCK",
        "IRIS_MAX_BODY_BYTES",
        "IRIS_STALE_AFTER_SECONDS",
        "IRIS_TRAIN_SCHEDULE",
        "IRIS_SIGNING_KEY_FILE",
    ):
        assert name in read
