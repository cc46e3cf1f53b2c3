"""The kubernetes client calls irisctl makes, pinned to one kubeconfig context and namespace.

Objects go in and come out as plain JSON dicts (the manifests' own shape), through the
client's DynamicClient; pod logs and port-forwards use CoreV1Api. Nothing here reads the
kubeconfig's current-context: ``connect`` needs the context by name (RELIABILITY.md F3).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BadInput, IrisctlError

FIELD_MANAGER = "irisctl"
# Kinds that live outside any namespace, among those irisctl reads or writes.
CLUSTER_SCOPED = frozenset({"Namespace", "StorageClass"})


@dataclass(frozen=True)
class Context:
    """A kubeconfig context irisctl was told to use, and the API server it points at."""

    name: str
    server: str
    kubeconfig: str


def kubeconfig_path(configured: str) -> str:
    """The kubeconfig file(s): the setting, else ``KUBECONFIG``, else ``~/.kube/config``."""
    return configured or os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())


def contexts(kubeconfig: str) -> tuple[dict[str, str], str | None]:
    """context name → server URL, and the current-context (only ever shown, never used)."""
    import yaml

    files = [Path(p).expanduser() for p in kubeconfig.split(os.pathsep) if p]
    if not any(p.is_file() for p in files):
        raise IrisctlError(
            f"no kubeconfig at {kubeconfig}",
            "point --kubeconfig (or KUBECONFIG) at your cluster's kubeconfig",
        )
    # Merged like kubectl does: the first file that names a context or cluster wins.
    clusters: dict[str, str] = {}
    found: dict[str, str] = {}
    cluster_of: dict[str, str] = {}
    current = None
    for path in (p for p in files if p.is_file()):
        try:
            raw = yaml.safe_load(path.read_text()) or {}
            for c in raw.get("clusters") or []:
                clusters.setdefault(c["name"], (c.get("cluster") or {}).get("server", ""))
            for c in raw.get("contexts") or []:
                cluster_of.setdefault(c["name"], (c.get("context") or {}).get("cluster", ""))
        except (OSError, yaml.YAMLError, AttributeError, KeyError, TypeError) as exc:
            raise IrisctlError(f"the kubeconfig {path} cannot be read: {exc}") from None
        current = current or raw.get("current-context")
    found = {name: clusters.get(cluster, "") for name, cluster in cluster_of.items()}
    if not found:
        raise IrisctlError(
            f"the kubeconfig {kubeconfig} has no contexts",
            "log in to your cluster first (an empty kubeconfig makes clients dial localhost:8080)",
        )
    return found, current or None


def resolve(kubeconfig: str, name: str) -> Context:
    """The named context, or a clear refusal: irisctl never falls back to current-context."""
    found, current = contexts(kubeconfig)
    if not name:
        raise BadInput(
            "the kubernetes target needs a kubeconfig context, named explicitly",
            f"pass --context (contexts in {kubeconfig}: {', '.join(sorted(found)) or 'none'}; "
            f"current-context {current!r} is never used implicitly)",
        )
    if name not in found:
        raise BadInput(
            f"kubeconfig context {name!r} is not in {kubeconfig}",
            f"contexts there: {', '.join(sorted(found)) or 'none'}",
        )
    if not found[name]:
        raise IrisctlError(f"kubeconfig context {name!r} names no API server")
    return Context(name=name, server=found[name], kubeconfig=kubeconfig)


@contextmanager
def _api_errors(what: str, server: str = "") -> Iterator[None]:
    """Turn the client's exceptions into one clear IrisctlError."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic.exceptions import DynamicApiError, ResourceNotFoundError
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ResourceNotFoundError:  # discovery does not list the kind (an older API server)
        raise IrisctlError(
            f"Kubernetes API: {what} failed: the API server does not serve that kind",
            "see `kubectl api-resources`; irisctl needs Kubernetes 1.30 or newer",
        ) from None
    except (ApiException, DynamicApiError) as exc:
        status = getattr(exc, "status", "?")
        said = status_message(getattr(exc, "body", None))
        reason = said.get("reason") or getattr(exc, "reason", "") or str(exc).splitlines()[0]
        message = said.get("message", "")
        causes = "; ".join(
            f"{c.get('field', '')}: {c.get('message', '')}".strip(": ")
            for c in said.get("causes") or []
        )
        hint = (
            "your kubeconfig user may lack RBAC rights in this namespace"
            if status == 403 and "being terminated" not in message
            else "the API server's message says what it refused"
            if message
            else "see `kubectl get events -n NAMESPACE`"
        )
        text = f"Kubernetes API: {what} failed ({status} {reason})"
        if message:
            text += f": {message}"
        if causes and causes not in message:
            text += f" [{causes}]"
        raise IrisctlError(text, hint) from None
    except (HTTPError, OSError) as exc:
        raise IrisctlError(
            f"the Kubernetes API server {server or ''} is not reachable while {what}: "
            f"{transport_cause(exc)}",
            "is the cluster running? (`minikube status` for minikube)",
        ) from None


def status_message(body: Any) -> dict[str, Any]:
    """The API server's Status object (message, reason, details.causes) from an error body."""
    import json

    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    try:
        status = json.loads(body) if isinstance(body, str) and body else {}
    except ValueError:
        return {"message": str(body).strip()} if body else {}
    if not isinstance(status, dict):
        return {}
    return {
        "message": str(status.get("message") or ""),
        "reason": str(status.get("reason") or ""),
        "causes": (status.get("details") or {}).get("causes") or [],
    }


def transport_cause(exc: BaseException) -> str:
    """The whole innermost cause of a transport error (urllib3 wraps it in MaxRetryError),
    never cut: an expired certificate must not end at "certificate verify failed: "."""
    inner: BaseException = exc
    while True:
        nxt = getattr(inner, "reason", None)
        if isinstance(nxt, BaseException) and nxt is not inner:
            inner = nxt
            continue
        break
    text = str(inner).strip() or type(inner).__name__
    errno = re.search(r"\[Errno -?\d+\][^'\")]*", text)  # the socket's own words
    return errno.group(0).strip() if errno else text


class Cluster:
    """One namespace of one cluster. Built by ``connect``; tests pass fakes of the client."""

    def __init__(
        self,
        dynamic: Any,
        core: Any,
        namespace: str,
        server: str = "",
        configuration: Any = None,
    ) -> None:
        self.dynamic = dynamic
        self.core = core
        self.namespace = namespace
        self.server = server
        # For a fresh ApiClient per port-forward stream (see open_port); None: use ``core``.
        self.configuration = configuration

    @classmethod
    def connect(cls, context: Context, namespace: str) -> Cluster:
        from kubernetes import client, config
        from kubernetes.dynamic import DynamicClient

        with _api_errors(f"connecting to context {context.name}", context.server):
            api = config.new_client_from_config(
                config_file=context.kubeconfig, context=context.name
            )
            return cls(
                DynamicClient(api),
                client.CoreV1Api(api),
                namespace,
                context.server,
                api.configuration,
            )

    def _resource(self, api_version: str, kind: str) -> Any:
        return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def serves(self, group_version: str) -> bool:
        """The API server lists ``group_version`` in discovery (e.g. ``metrics.k8s.io/v1beta1``,
        which metrics-server registers)."""
        from kubernetes.dynamic.exceptions import NotFoundError, ServiceUnavailableError

        with _api_errors(f"discovering {group_version}", self.server):
            try:
                self.dynamic.request("get", f"/apis/{group_version}")
            except (NotFoundError, ServiceUnavailableError):  # not there, or not answering
                return False
        return True

    def _ns(self, kind: str) -> str | None:
        return None if kind in CLUSTER_SCOPED else self.namespace

    # -- objects -------------------------------------------------------------------------------

    def apply(self, doc: dict[str, Any]) -> None:
        """Server-side apply as field manager ``irisctl`` (no last-applied annotation).

        Never forced: a field another manager owns is the API server's 409 Conflict, reported,
        not taken over (https://kubernetes.io/docs/reference/using-api/server-side-apply/).
        """
        kind, name = doc["kind"], doc["metadata"]["name"]
        with _api_errors(f"applying {kind}/{name}", self.server):
            self.dynamic.server_side_apply(
                self._resource(doc["apiVersion"], kind),
                body=doc,
                name=name,
                namespace=self._ns(kind),
                field_manager=FIELD_MANAGER,
                force_conflicts=False,
            )

    def merge_patch(self, api_version: str, kind: str, name: str, body: dict[str, Any]) -> None:
        """A JSON merge patch as ``irisctl``: an Update, which takes over the fields it changes
        without a conflict (how a count an autoscaler owned is handed back before an apply)."""
        with _api_errors(f"patching {kind}/{name}", self.server):
            self.dynamic.patch(
                self._resource(api_version, kind),
                body=body,
                name=name,
                namespace=self._ns(kind),
                content_type="application/merge-patch+json",
                field_manager=FIELD_MANAGER,
            )

    def get(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        from kubernetes.dynamic.exceptions import NotFoundError

        with _api_errors(f"reading {kind}/{name}", self.server):
            try:
                found = self.dynamic.get(
                    self._resource(api_version, kind), name=name, namespace=self._ns(kind)
                )
            except NotFoundError:
                return None
        result: dict[str, Any] = found.to_dict()
        return result

    def find(
        self, api_version: str, kind: str, selector: str = "", fields: str = ""
    ) -> list[dict[str, Any]]:
        """Objects of a kind in the namespace (or the cluster's, for a cluster-scoped kind), by
        label (and field) selector."""
        from kubernetes.dynamic.exceptions import NotFoundError

        with _api_errors(f"listing {kind}", self.server):
            try:
                extra = {"field_selector": fields} if fields else {}
                found = self.dynamic.get(
                    self._resource(api_version, kind),
                    namespace=self._ns(kind),
                    label_selector=selector or None,
                    **extra,
                )
            except NotFoundError:  # the namespace is gone
                return []
        items: list[dict[str, Any]] = found.to_dict().get("items") or []
        return items

    def create(self, doc: dict[str, Any]) -> None:
        kind, name = doc["kind"], doc["metadata"]["name"]
        with _api_errors(f"creating {kind}/{name}", self.server):
            self.dynamic.create(
                self._resource(doc["apiVersion"], kind),
                body=doc,
                namespace=self._ns(kind),
                field_manager=FIELD_MANAGER,
            )

    def delete(
        self, api_version: str, kind: str, name: str, propagation: str = "Background"
    ) -> bool:
        """Delete one object (its dependents in the background); False when it was not there."""
        from kubernetes.dynamic.exceptions import NotFoundError

        with _api_errors(f"deleting {kind}/{name}", self.server):
            try:
                self.dynamic.delete(
                    self._resource(api_version, kind),
                    name=name,
                    namespace=self._ns(kind),
                    propagation_policy=propagation,
                )
            except NotFoundError:
                return False
        return True

    def secret(self, name: str) -> dict[str, str] | None:
        """A Secret's decoded values, or None when it does not exist."""
        found = self.get("v1", "Secret", name)
        if found is None:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (found.get("data") or {}).items()}

    # -- pods ----------------------------------------------------------------------------------

    def pod_log(self, pod: str, tail: int | None = None, previous: bool = False) -> list[str]:
        """The log's lines as the container wrote them: raw bytes, not the client's
        deserialised body (some client versions turn a one-line JSON log into a Python repr)."""
        with _api_errors(f"reading the log of pod {pod}", self.server):
            response = self.core.read_namespaced_pod_log(
                pod, self.namespace, tail_lines=tail, previous=previous, _preload_content=False
            )
            try:
                data = response.data
            finally:
                response.release_conn()
        text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
        return text.splitlines()

    def follow_log(self, pod: str, tail: int | None = None) -> Iterator[str]:
        """A pod's log lines as they are written, until the container ends."""
        with _api_errors(f"following the log of pod {pod}", self.server):
            response = self.core.read_namespaced_pod_log(
                pod, self.namespace, tail_lines=tail, follow=True, _preload_content=False
            )
            pending = b""
            try:
                for chunk in response.stream(4096):
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        yield line.decode(errors="replace")
                if pending:
                    yield pending.decode(errors="replace")
            finally:
                response.release_conn()

    def open_port(self, pod: str, port: int) -> PortStream:
        """A socket-like connection to ``port`` of ``pod`` (the API server's port-forward).

        Each stream gets its own ApiClient: ``kubernetes.stream`` swaps the client's
        ``call_api`` while it opens the websocket, which is not thread-safe
        (kubernetes-client/python#928); a shared client breaks concurrent connections and the
        REST calls made meanwhile on other threads.
        """
        from kubernetes import client
        from kubernetes.stream import portforward

        core = self.core
        if self.configuration is not None:
            core = client.CoreV1Api(client.ApiClient(self.configuration))
        with _api_errors(f"port-forwarding to pod {pod}", self.server):
            forward = portforward(
                core.connect_get_namespaced_pod_portforward,
                pod,
                self.namespace,
                ports=str(port),
            )
            return PortStream(forward, port)


class PortStream:
    """One port-forward stream as a socket, plus what the kubelet said on its error channel
    (e.g. "connection refused" when nothing listens on the container port)."""

    def __init__(self, forward: Any, port: int) -> None:
        self.forward = forward
        self.port = port
        self.sock = forward.socket(port)

    def fileno(self) -> int:
        return int(self.sock.fileno())

    def recv(self, size: int) -> bytes:
        data: bytes = self.sock.recv(size)
        return data

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()

    def error(self) -> str | None:
        said: str | None = self.forward.error(self.port)
        return said
