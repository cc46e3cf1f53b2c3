"""Fakes at the boundaries this machine cannot reach: NOT a Kubernetes cluster.

``FakeDynamic`` and ``FakeCore`` stand in for the kubernetes client's ``DynamicClient`` and
``CoreV1Api`` with the same method names and keyword arguments irisctl uses; they keep objects
in a dict, record every call, and a small "controller" marks what a cluster would (rollouts
finished, a Job's pod ran). ``stub_minikube`` writes a ``minikube`` script on PATH that logs its
argv and answers like minikube does.
"""

from __future__ import annotations

import copy
import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import NotFoundError

from irisctl.clients.kube import Cluster

MUTATING = {"server_side_apply", "create", "delete"}


class _Instance:
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._data)


def _matches(obj: dict[str, Any], selector: str | None) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in (selector or "").split(","):
        if term:
            key, _, value = term.partition("=")
            if labels.get(key) != value:
                return False
    return True


class FakeDynamic:
    """Not a cluster: an object store with the DynamicClient's call shapes, and a controller."""

    def __init__(self, healthy: bool = True) -> None:
        # minikube's default class (its default-storageclass addon), which `up` checks for.
        self.objects: dict[tuple[str, str], dict[str, Any]] = {
            ("StorageClass", "standard"): {
                "kind": "StorageClass",
                "metadata": {
                    "name": "standard",
                    "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                },
            }
        }
        self.calls: list[tuple[str, str, str, dict[str, Any]]] = []
        self.healthy = healthy  # Deployments roll out and Jobs succeed as soon as applied
        self.resources = SimpleNamespace(get=self._resource)
        self._clock = 0

    @staticmethod
    def _resource(api_version: str, kind: str) -> SimpleNamespace:
        return SimpleNamespace(api_version=api_version, kind=kind, namespaced=kind != "Namespace")

    def _stamp(self, obj: dict[str, Any]) -> None:
        self._clock += 1
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", f"uid-{self._clock}")
        meta.setdefault("creationTimestamp", f"2026-11-26T10:00:{self._clock:02d}Z")
        meta["generation"] = meta.get("generation", 0) + 1

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Seed an object as if the cluster had it."""
        obj = copy.deepcopy(obj)
        self._stamp(obj)
        self.objects[(obj["kind"], obj["metadata"]["name"])] = obj
        return obj

    # -- the DynamicClient's methods -----------------------------------------------------------

    def server_side_apply(self, resource, body=None, name=None, namespace=None, **kwargs):
        self.calls.append(
            ("server_side_apply", resource.kind, name, {"namespace": namespace, **kwargs})
        )
        key = (resource.kind, name)
        old = self.objects.get(key)
        obj = copy.deepcopy(body)
        if old is not None:
            obj["metadata"] = {**old["metadata"], **obj["metadata"]}
            obj.setdefault("status", old.get("status"))
        self._stamp(obj)
        self.objects[key] = obj
        self._control(obj)
        return _Instance(obj)

    def create(self, resource, body=None, namespace=None, **kwargs):
        name = body["metadata"]["name"]
        self.calls.append(("create", resource.kind, name, {"namespace": namespace, **kwargs}))
        if (resource.kind, name) in self.objects:
            raise ApiException(status=409, reason="AlreadyExists")
        obj = copy.deepcopy(body)
        self._stamp(obj)
        self.objects[(resource.kind, name)] = obj
        self._control(obj)
        return _Instance(obj)

    def get(self, resource, name=None, namespace=None, label_selector=None, **kwargs):
        self.calls.append(("get", resource.kind, name or "", {"label_selector": label_selector}))
        if name:
            obj = self.objects.get((resource.kind, name))
            if obj is None:
                raise NotFoundError(ApiException(status=404, reason="Not Found"))
            return _Instance(obj)
        items = [
            o
            for (kind, _), o in sorted(self.objects.items())
            if kind == resource.kind and _matches(o, label_selector)
        ]
        return _Instance({"items": items})

    def delete(self, resource, name=None, namespace=None, **kwargs):
        self.calls.append(("delete", resource.kind, name, {"namespace": namespace, **kwargs}))
        if self.objects.pop((resource.kind, name), None) is None:
            raise NotFoundError(ApiException(status=404, reason="Not Found"))

    # -- what a cluster's controllers would do -------------------------------------------------

    def _control(self, obj: dict[str, Any]) -> None:
        if not self.healthy:
            return
        if obj["kind"] == "Deployment":
            n = obj["spec"].get("replicas", 1)
            obj["status"] = {
                "observedGeneration": obj["metadata"]["generation"],
                "replicas": n,
                "updatedReplicas": n,
                "readyReplicas": n,
                "availableReplicas": n,
            }
            labels = obj["spec"]["template"]["metadata"]["labels"]
            self.put(pod(f"{obj['metadata']['name']}-abc12", labels, ready=True))
        elif obj["kind"] == "Job":
            obj["status"] = {
                "succeeded": 1,
                "conditions": [{"type": "Complete", "status": "True"}],
            }
            name = obj["metadata"]["name"]
            labels = {**(obj["spec"]["template"]["metadata"].get("labels") or {}), "job-name": name}
            self.put(pod(f"{name}-x1", labels, terminated=0))

    def keep_unready(self, deployment: str, waiting: str, restarts: int = 0) -> str:
        """From now on ``deployment`` rolls out with its pod stuck in ``waiting``; its pod name."""
        healthy_control = self._control
        name = f"{deployment}-1"

        def control(obj: dict[str, Any]) -> None:
            healthy_control(obj)
            if obj["kind"] == "Deployment" and obj["metadata"]["name"] == deployment:
                obj["status"]["readyReplicas"] = 0
                self.objects.pop(("Pod", f"{deployment}-abc12"), None)
                labels = {
                    "app.kubernetes.io/name": deployment,
                    "app.kubernetes.io/part-of": "irisctl",
                }
                self.put(pod(name, labels, waiting=waiting, restarts=restarts))

        self._control = control  # type: ignore[method-assign]
        return name

    def mutations(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        return [c for c in self.calls if c[0] in MUTATING]


def pod(
    name: str,
    labels: dict[str, str],
    ready: bool = False,
    waiting: str | None = None,
    terminated: int | None = None,
    restarts: int = 0,
) -> dict[str, Any]:
    """A Pod as the API server returns it."""
    if waiting:
        state: dict[str, Any] = {"waiting": {"reason": waiting, "message": f"{waiting} details"}}
    elif terminated is not None:
        state = {"terminated": {"exitCode": terminated}}
    else:
        state = {"running": {"startedAt": "2026-11-26T10:00:00Z"}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "status": {
            "phase": "Running" if ready else "Pending",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": "c", "restartCount": restarts, "state": state}],
        },
    }


class _Stream:
    def __init__(self, text: str) -> None:
        self.text = text
        self.released = False

    def stream(self, size: int):
        data = self.text.encode()
        for i in range(0, len(data), 7):  # odd chunks: lines split across reads
            yield data[i : i + 7]

    @property
    def data(self) -> bytes:
        return self.text.encode()

    def release_conn(self) -> None:
        self.released = True


class FakeCore:
    """Not a cluster: CoreV1Api's pod-log call, answering from a dict of pod → log text."""

    def __init__(self) -> None:
        self.logs: dict[str, str] = {}
        self.previous: dict[str, str] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def read_namespaced_pod_log(self, name, namespace, **kwargs):
        self.calls.append((name, kwargs))
        text = (self.previous if kwargs.get("previous") else self.logs).get(name, "")
        if kwargs.get("tail_lines") is not None:
            text = "\n".join(text.splitlines()[-kwargs["tail_lines"] :])
        if kwargs.get("follow") or kwargs.get("_preload_content") is False:
            return _Stream(text)
        return text


def fake_cluster(namespace: str = "iris-mlops", healthy: bool = True) -> Cluster:
    return Cluster(FakeDynamic(healthy), FakeCore(), namespace, "https://fake")


def write_kubeconfig(path: Path, contexts: dict[str, str], current: str) -> Path:
    """A kubeconfig with context name → server URL."""
    import yaml

    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": current,
                "clusters": [{"name": n, "cluster": {"server": s}} for n, s in contexts.items()],
                "contexts": [{"name": n, "context": {"cluster": n, "user": "u"}} for n in contexts],
                "users": [{"name": "u", "user": {"token": "t"}}],
            }
        )
    )
    return path


def stub_binary(bin_dir: Path, name: str, script: str) -> Path:
    """A shell script ``name`` on ``bin_dir`` that appends its argv to ``bin_dir/name.log``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(f'#!/bin/sh\necho "$@" >> "{bin_dir}/{name}.log"\n{script}\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def stub_minikube(bin_dir: Path, running: bool = True, start_fails: str = "") -> Path:
    """``minikube``: status/ip/addons/docker-env/start/stop as minikube answers them."""
    status = json.dumps(
        {
            "Name": "minikube",
            "Host": "Running" if running else "Stopped",
            "Kubelet": "Running" if running else "Stopped",
            "APIServer": "Running" if running else "Stopped",
            "Kubeconfig": "Configured",
        }
    )
    addons = json.dumps(
        {"ingress": {"Status": "disabled"}, "metrics-server": {"Status": "enabled"}}
    )
    env = json.dumps({"DOCKER_HOST": "tcp://192.168.49.2:2376", "DOCKER_TLS_VERIFY": "1"})
    start = (
        f"echo '❌  Exiting due to {start_fails}: docker is not running'; exit 69"
        if start_fails
        else "echo 'Done! kubectl is now configured'"
    )
    script = f"""
case "$3" in
  status) echo '{status}'; {"exit 0" if running else "exit 7"} ;;
  ip) echo 192.168.49.2 ;;
  addons) if [ "$4" = list ]; then echo '{addons}'; else echo "enabled $5"; fi ;;
  docker-env) echo '{env}' ;;
  start) {start} ;;
  stop) echo stopped ;;
esac
"""
    return stub_binary(bin_dir, "minikube", script)


def path_with(bin_dir: Path) -> str:
    """PATH with only the stubs and the basic system tools (no real minikube/kubectl/docker)."""
    return os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"])
