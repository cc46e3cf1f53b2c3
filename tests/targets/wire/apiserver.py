"""A Kubernetes API server stand-in that the real ``kubernetes`` client and ``kubectl`` reach
over real HTTPS on 127.0.0.1.

It is no kube-apiserver: it keeps objects in memory and runs a tiny controller loop. What it
imitates, and where the real behaviour is documented:

- **Discovery**: ``/version``, ``/api``, ``/apis``, ``/api/v1``, ``/apis/{group}/{version}``
  (APIVersions, APIGroupList, APIResourceList incl. subresources such as ``pods/log``,
  ``pods/portforward``) — https://kubernetes.io/docs/reference/using-api/api-concepts/
  ("Discovery API"). ``/openapi/v3`` says only that PATCH takes ``fieldValidation``, so
  kubectl leaves validation to the server; ``/openapi/v2`` is an empty document.
- **Server-side apply**: ``PATCH`` with ``Content-Type: application/apply-patch+yaml`` and
  ``fieldManager`` (required) / ``force``; creates the object when missing, else the applied
  configuration replaces the fields its manager owns, keeping ``status``, system metadata and
  the fields other managers own — https://kubernetes.io/docs/reference/using-api/server-side-apply/.
  **Field-manager conflicts** (same page, "Conflicts"): every write records which manager owns
  each field it set (create, update and merge-patch by ``fieldManager``, else the User-Agent's
  product name, as the apiserver defaults it); an apply that would change a field another
  manager owns is refused with 409 ``Conflict`` and the apiserver's message ("Apply failed with
  1 conflict: conflict with "M" using v1: .data.k",
  k8s.io/apimachinery/pkg/util/managedfields/internal/conflict.go) unless ``force=true``, which
  takes the fields over. Simplified: lists are atomic (no associative ``name`` keys) and
  ownership is kept beside the object, not shown as ``metadata.managedFields``.
  ``application/merge-patch+json`` and ``strategic-merge-patch+json`` are merged as RFC 7386.
- **CRUD**: GET, LIST (``labelSelector`` with ``=``, ``==``, ``!=``, ``in``, ``notin``,
  existence), POST (409 AlreadyExists), DELETE with ``propagationPolicy`` (a Job deleted without
  one orphans its pods: the batch API's default, see kubernetes/kubernetes#71801 and
  https://kubernetes.io/docs/concepts/architecture/garbage-collection/), ``dryRun=All``
  (validated, not stored).
- **Status objects** for every error: ``{"kind": "Status", "status": "Failure", "message",
  "reason", "details", "code"}`` — https://kubernetes.io/docs/reference/using-api/api-concepts/
  ("Responses"), the messages worded like the apiserver's (``deployments.apps "x" not found``).
- **Namespaces**: creating in a missing namespace is 404 ``namespaces "x" not found``
  (NamespaceLifecycle admission). Deleting a namespace leaves it ``Terminating`` for
  ``terminate_s`` seconds, during which creating anything in it is 403 Forbidden "unable to
  create new content in namespace X because it is being terminated" (the admission plugin's
  words, plugin/pkg/admission/namespace/lifecycle/admission.go).
- **A controller**: each Deployment gets a ReplicaSet per pod-template hash and
  ``spec.replicas`` Pods; a Pod is Running at once and Ready when its readinessProbe's httpGet
  answers 2xx/3xx from the REAL local server the test maps for it (``serve``), else not ready
  ("containers with unready status") and a Warning Event ``Unhealthy`` with the probe's
  error, as the kubelet records it (LIST events with ``fieldSelector=involvedObject.name=P``);
  ``pod_create_error`` refuses a Deployment's pods as admission does: ReplicaFailure/
  FailedCreate on the ReplicaSet and Deployment, and a FailedCreate Event; old pods go once
  the new ones are ready
  (RollingUpdate). Deployment status: observedGeneration, replicas, updatedReplicas,
  readyReplicas, availableReplicas, unavailableReplicas, conditions Available / Progressing
  (https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#deployment-status).
  StorageClasses: ``standard``, the default, as minikube's default-storageclass addon leaves it;
  a PVC without a class gets the default one (DefaultStorageClass admission) and is Bound only
  if its class exists, else Pending.
  A Job gets a Pod (labels ``job-name``, ``batch.kubernetes.io/job-name``,
  ``controller-uid``) whose outcome ``job_outcome`` decides; a failed pod is replaced until
  ``backoffLimit`` failures (https://kubernetes.io/docs/concepts/workloads/controllers/job/
  #pod-backoff-failure-policy), then status.failed and conditions FailureTarget/Failed with
  ``BackoffLimitExceeded``; a ``podFailurePolicy`` (#pod-failure-policy) decides first:
  ``FailJob`` ends it at once (reason ``PodFailurePolicy``), ``Ignore`` does not count the
  failure; success: status.succeeded, SuccessCriteriaMet/Complete.
- **A CronJob controller**, run by the test with a clock of its own (``cronjob_sync(now)``: a
  laptop that slept through 03:00 is a clock moved past it), after kubernetes'
  ``pkg/controller/cronjob/cronjob_controllerv2.go`` (``syncCronJob``) and ``utils.go``
  (``mostRecentScheduleTime``, ``nextScheduleTime``): the earliest time considered is the
  ``lastScheduleTime`` (else the creation time), moved up to ``now - startingDeadlineSeconds``
  when that is set, so a run missed by more than the deadline is never started (silently: the
  v2 controller's ``MissSchedule`` branch, ``tooLate``, is kept but cannot trigger once the
  deadline has filtered the times); only the most recent missed time is started; more than 100
  missed times record a Warning ``TooManyMissedTimes`` and still start it; ``Forbid`` with an
  active Job records ``JobAlreadyActive`` and starts nothing; a Job is named
  ``<cronjob>-<minutes since epoch>`` (``getJobFromTemplate2``), owned by the CronJob, with the
  ``batch.kubernetes.io/cronjob-scheduled-timestamp`` annotation and a ``SuccessfulCreate``
  Event; finished Jobs leave ``status.active`` (``lastSuccessfulTime`` from a completed one).
- **Probe-driven restarts** (with ``probe_clock_s`` set): the kubelet's probe workers
  (``pkg/kubelet/prober/worker.go``, https://kubernetes.io/docs/concepts/configuration/
  liveness-readiness-startup-probes/): a startupProbe holds liveness and readiness off until it
  succeeds; ``failureThreshold`` consecutive startup or liveness failures, one every
  ``periodSeconds``, kill and restart the container (``restartCount``, ``lastState``, a
  ``Killing`` Event). The restart is only recorded: no real process is restarted.
- **Containers that do not run** (``container_trouble``): CrashLoopBackOff with restartCount,
  lastState and the previous container's log (``previous=true``); ErrImagePull then
  ImagePullBackOff with the pod Pending (https://kubernetes.io/docs/concepts/containers/images/
  #imagepullbackoff), its log refused ("is waiting to start").
- **Pod logs**: ``GET .../pods/NAME/log`` with ``tailLines``, ``previous``, and
  ``follow=true`` streaming chunked until the container ends.
- **Port-forward**: ``GET/POST .../pods/NAME/portforward?ports=P`` upgraded to a websocket with
  subprotocol ``v4.channel.k8s.io``: per port a data channel (2i) and an error channel (2i+1),
  each first frame carrying the port as 2 bytes little-endian (the client's
  kubernetes/stream/ws_client.py ``PortForward._proxy`` checks exactly that); bytes are piped
  to the real local TCP server mapped for the pod's port; a refused dial is reported on the
  error channel in the kubelet's words ("... dial tcp4 127.0.0.1:P: connect: connection
  refused").

Not covered: protobuf bodies (``kubectl create``/``run`` send them: 415 here; ``kubectl
apply``/``get``/``delete`` speak JSON), watches, RBAC/authn, admission webhooks, quotas,
scheduling, real image pulls and restarts (only reported, see above), multi-container pods,
resourceVersion conflicts, ``metadata.managedFields`` in responses.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import datetime
import hashlib
import json
import re
import ssl
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import WSMsgType, web
from croniter import croniter

# (group, version) → [(plural, kind, namespaced, shortNames)]
RESOURCES: dict[tuple[str, str], list[tuple[str, str, bool, list[str]]]] = {
    ("", "v1"): [
        ("namespaces", "Namespace", False, ["ns"]),
        ("configmaps", "ConfigMap", True, ["cm"]),
        ("secrets", "Secret", True, []),
        ("services", "Service", True, ["svc"]),
        ("pods", "Pod", True, ["po"]),
        ("persistentvolumeclaims", "PersistentVolumeClaim", True, ["pvc"]),
        ("serviceaccounts", "ServiceAccount", True, ["sa"]),
        ("events", "Event", True, ["ev"]),
        ("endpoints", "Endpoints", True, ["ep"]),
    ],
    ("apps", "v1"): [
        ("deployments", "Deployment", True, ["deploy"]),
        ("replicasets", "ReplicaSet", True, ["rs"]),
        ("statefulsets", "StatefulSet", True, ["sts"]),
        ("daemonsets", "DaemonSet", True, ["ds"]),
    ],
    ("batch", "v1"): [
        ("jobs", "Job", True, []),
        ("cronjobs", "CronJob", True, ["cj"]),
    ],
    ("networking.k8s.io", "v1"): [
        ("ingresses", "Ingress", True, ["ing"]),
        ("networkpolicies", "NetworkPolicy", True, ["netpol"]),  # stored only, not enforced
    ],
    ("rbac.authorization.k8s.io", "v1"): [
        ("roles", "Role", True, []),
        ("rolebindings", "RoleBinding", True, []),
    ],
    ("policy", "v1"): [("poddisruptionbudgets", "PodDisruptionBudget", True, ["pdb"])],
    ("autoscaling", "v2"): [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True, ["hpa"])],
    ("storage.k8s.io", "v1"): [("storageclasses", "StorageClass", False, ["sc"])],
}
# What metrics-server registers (an APIService), listed only with ``metrics_server`` on.
METRICS_API = ("metrics.k8s.io", "v1beta1")
METRICS_RESOURCES = [("nodes", "NodeMetrics", False, []), ("pods", "PodMetrics", True, [])]
SUBRESOURCES = {
    "horizontalpodautoscalers": ["status"],
    "pods": ["status", "log", "portforward", "exec"],
    "deployments": ["status", "scale"],
    "replicasets": ["status", "scale"],
    "jobs": ["status"],
    "cronjobs": ["status"],
    "namespaces": ["status", "finalize"],
}
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
PLURAL_OF = {kind: plural for rs in RESOURCES.values() for plural, kind, _, _ in rs}
GV_OF = {kind: gv for gv, rs in RESOURCES.items() for _, kind, _, _ in rs}


def _pb_string(field_no: int, text: str) -> bytes:
    data = text.encode()
    return bytes([field_no << 3 | 2, len(data)]) + data


# An OpenAPI v2 document with no definitions, in gnostic's protobuf (openapi_v2.proto:
# Document{swagger=1, info=2{title=1, version=2}}), the format kubectl asks for; kubectl's
# client-side schema validation skips kinds it has no schema for, and its fieldValidation
# check reads /openapi/v3.
OPENAPI_V2_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
_INFO = _pb_string(1, "Kubernetes") + _pb_string(2, "v1.32.0")
OPENAPI_V2 = _pb_string(1, "2.0") + bytes([2 << 3 | 2, len(_INFO)]) + _INFO
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
APP = "app.kubernetes.io/name"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def api_version(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def qualified(plural: str, group: str) -> str:
    """``deployments.apps`` as the apiserver names resources in messages (core: ``pods``)."""
    return f"{plural}.{group}" if group else plural


def object_details(plural: str, group: str, name: str) -> dict[str, str]:
    """A Status's ``details`` for one object (``group`` is omitted when empty, as in the API)."""
    found = {"name": name, "group": group, "kind": plural}
    return found if group else {"name": name, "kind": plural}


class ApiError(Exception):
    """An error the API server answers with a Status object."""

    def __init__(
        self, code: int, reason: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def match_selector(labels: dict[str, str], selector: str) -> bool:
    """A label selector string as ``kubectl -l`` and ``labelSelector=`` take it."""
    if not selector:
        return True
    for term in re.split(r",(?![^()]*\))", selector):
        term = term.strip()
        if not term:
            continue
        m = re.match(r"^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$", term)
        if m:
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if (op == "in") != (labels.get(key) in values):
                return False
            continue
        m = re.match(r"^([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)$", term)
        if m:
            key, op, value = m.groups()
            if (op == "!=") == (labels.get(key) == value):
                return False
            continue
        if term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def match_fields(obj: dict[str, Any], selector: str) -> bool:
    """A field selector (``involvedObject.name=x,reason=Unhealthy``; ``=``, ``==``, ``!=``)."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        m = re.match(r"^([\w.]+)\s*(==|=|!=)\s*(.*)$", term)
        if not m:
            raise ApiError(400, "BadRequest", f'invalid field selector "{term}"')
        path, op, value = m.groups()
        found: Any = obj
        for part in path.split("."):
            found = found.get(part) if isinstance(found, dict) else None
        if (op == "!=") == (str(found if found is not None else "") == value):
            return False
    return True


FieldPath = tuple[str, ...]


def field_leaves(obj: dict[str, Any]) -> dict[FieldPath, Any]:
    """The fields a write sets, as SSA tracks them: map leaves (lists atomic), without the
    identity, system metadata and ``status``."""
    out: dict[FieldPath, Any] = {}

    def walk(node: Any, path: FieldPath) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, (*path, k))
        else:
            out[path] = node

    for key, value in obj.items():
        if key in ("apiVersion", "kind", "status"):
            continue
        if key == "metadata":
            for mk in ("labels", "annotations"):
                if value.get(mk):
                    walk(value[mk], ("metadata", mk))
            continue
        walk(value, (key,))
    return out


def field_path(path: FieldPath) -> str:
    return "".join(f".{p}" for p in path)


def set_field(obj: dict[str, Any], path: FieldPath, value: Any) -> None:
    for p in path[:-1]:
        obj = obj.setdefault(p, {})
    obj[path[-1]] = copy.deepcopy(value)


def conflict_error(conflicts: list[tuple[str, FieldPath]], api_version_: str) -> ApiError:
    """409 as the apiserver words it (managedfields/internal/conflict.go getConflictMessage)."""
    if len(conflicts) == 1:
        manager, path = conflicts[0]
        message = (
            f'Apply failed with 1 conflict: conflict with "{manager}" using {api_version_}: '
            f"{field_path(path)}"
        )
    else:
        lines = []
        for manager in sorted({m for m, _ in conflicts}):
            lines.append(f'conflicts with "{manager}" using {api_version_}:')
            lines += [f"- {field_path(p)}" for m, p in conflicts if m == manager]
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    causes = [
        {"type": "FieldManagerConflict", "message": f'conflict with "{m}"', "field": field_path(p)}
        for m, p in conflicts
    ]
    return ApiError(409, "Conflict", message, {"causes": causes})


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def template_hash(template: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    return format(int(digest[:8], 16) % 10**10, "x")[:10]


def suffix() -> str:
    return uuid.uuid4().hex[:5]


@dataclass
class PodRuntime:
    """What the emulator knows of a pod's container beyond its object: log and liveness."""

    log: list[str] = field(default_factory=list)
    previous_log: list[str] = field(default_factory=list)
    ended: bool = False
    changed: asyncio.Event | None = None
    # The kubelet's probe workers (pkg/kubelet/prober/worker.go), on the pod's own clock.
    clock: float = 0.0  # pod-seconds since the container (re)started
    started: bool = False  # the startupProbe has succeeded (or there is none)
    due: dict[str, float] = field(default_factory=dict)  # probe → next run (pod-seconds)
    failures: dict[str, int] = field(default_factory=dict)  # probe → consecutive failures


class Emulator:
    """The API server; ``start()`` it, point a kubeconfig at ``url`` (``write_kubeconfig``).

    Test knobs (thread-safe to set before or while it runs):
    - ``serve(app, container_port, host, port)``: pods labelled ``app.kubernetes.io/name=app``
      have that container port answered by the real server at host:port (readiness probes and
      port-forwards go there). ``pod_hook(pod)`` is called (in a thread) for every new pod, so
      a test can start a real process and ``serve_pod`` it.
    - ``job_outcome(job_name, pod) -> (exit_code, log_lines)`` decides a Job pod's end; return
      None to end it later with ``end_pod``.
    - ``terminate_s``: how long a deleted namespace stays Terminating.
    - ``reject[(verb, kind, name)] = ApiError(...)``: the next such request fails so.
    """

    def __init__(self, tls_dir: Path, terminate_s: float = 1.0, probe_s: float = 0.2) -> None:
        self.tls_dir = tls_dir
        self.terminate_s = terminate_s
        self.probe_s = probe_s
        # Pod-seconds per probe tick: set it to run startup/liveness probes and their restarts.
        self.probe_clock_s: float | None = None
        # metrics-server's APIService (metrics.k8s.io) in discovery; the HPA controller below
        # needs no readings from it (it only holds a Deployment within min..max).
        self.metrics_server = False
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (kind, ns, name)
        # (kind, ns, name) → field → the managers that own it (server-side apply; applying the
        # value another manager set shares the field).
        self.owners: dict[tuple[str, str, str], dict[FieldPath, set[str]]] = {}
        self.runtime: dict[tuple[str, str], PodRuntime] = {}
        self.endpoints: dict[tuple[str, int], tuple[str, int]] = {}  # (app, port) → address
        self.pod_endpoints: dict[tuple[str, str, int], tuple[str, int]] = {}
        self.pod_hook: Callable[[dict[str, Any]], None] | None = None
        self.pod_deleted_hook: Callable[[dict[str, Any]], None] | None = None
        self.job_outcome: Callable[[str, dict[str, Any]], tuple[int, list[str]] | None] = (
            lambda job, pod: (0, [f"job {job} done"])
        )
        self.reject: dict[tuple[str, str, str], ApiError] = {}
        # (namespace, app) → why pod creation is refused ("exceeded quota: ..."): the
        # ReplicaSet and Deployment get ReplicaFailure/FailedCreate, and an Event.
        self.pod_create_error: dict[tuple[str, str], str] = {}
        # (namespace, app) → a container that does not run: {"reason": "CrashLoopBackOff",
        # "restarts": 4, "previous_log": [...]} or {"reason": "ImagePullBackOff"} (the pod
        # shows ErrImagePull first, ImagePullBackOff after ``pull_backoff_s``).
        self.container_trouble: dict[tuple[str, str], dict[str, Any]] = {}
        self.pull_backoff_s = 0.5
        self.requests: list[tuple[str, str]] = []  # (method, path?query) as received
        self.forwards = 0  # port-forward websockets opened
        self._rv = 0
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True, name="apiserver")
        self._ready = threading.Event()
        self.port = 0
        self.ca_pem = b""

    # -- life ----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> Emulator:
        self._ssl = self._tls()
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("the API server emulator did not start")
        # As minikube's default-storageclass addon (on by default) leaves it: one default class,
        # minikube/deploy/addons/storageclass/storageclass.yaml.
        self.call(
            lambda: self.objects.__setitem__(
                ("StorageClass", "", "standard"),
                self._stamp(
                    ("storage.k8s.io", "v1", "storageclasses", "StorageClass", False),
                    "",
                    {
                        "metadata": {
                            "name": "standard",
                            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                        },
                        "provisioner": "k8s.io/minikube-hostpath",
                    },
                ),
            )
        )
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            self._prober_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober_task
            await self._runner.cleanup()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def _tls(self) -> ssl.SSLContext:
        from .certs import make_ca, make_leaf

        ca_cert, ca_key = make_ca(self.tls_dir, "minikubeCA")
        cert, key = make_leaf(self.tls_dir, "apiserver", ca_cert, ca_key, server=True)
        make_leaf(self.tls_dir, "client", ca_cert, ca_key, server=False)
        self.ca_pem = ca_cert.read_bytes()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        return ctx

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        self.loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._ssl, backlog=128)
        self.loop.run_until_complete(site.start())
        self._site = site
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._http = None
        self._prober_task = self.loop.create_task(self._prober())
        self._ready.set()
        self.loop.run_forever()

    def restart_on_new_port(self) -> None:
        """``minikube stop`` then ``start`` where the API server's host port is random per start
        (the docker driver publishes 8443 as ``127.0.0.1::8443``, pkg/drivers/kic/oci/oci.go;
        so on macOS, Windows and WSL): the same cluster, its API server on a new port, the old
        one closed. Rewrite the kubeconfig afterwards, as ``minikube start`` does."""

        async def move() -> None:
            await self._site.stop()
            site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._ssl, backlog=128)
            await site.start()
            self._site = site
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        asyncio.run_coroutine_threadsafe(move(), self.loop).result(10)

    def write_kubeconfig(self, path: Path, context: str, namespace: str = "") -> Path:
        """A kubeconfig like minikube writes: one cluster, user and context, named the profile."""
        user_cert, user_key = self.tls_dir / "client.crt", self.tls_dir / "client.key"
        ctx: dict[str, Any] = {"cluster": context, "user": context}
        if namespace:
            ctx["namespace"] = namespace
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": context,
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(self.ca_pem).decode(),
                    },
                }
            ],
            "users": [
                {
                    "name": context,
                    "user": {
                        "client-certificate": str(user_cert),
                        "client-key": str(user_key),
                    },
                }
            ],
            "contexts": [{"name": context, "context": ctx}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the emulator's loop (where all state lives) and return its result."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    # -- test knobs ----------------------------------------------------------------------------

    def serve(self, app: str, container_port: int, host: str, port: int) -> None:
        self.endpoints[(app, container_port)] = (host, port)
        self.loop.call_soon_threadsafe(self._kick)

    def serve_pod(self, namespace: str, pod: str, container_port: int, address: tuple) -> None:
        self.pod_endpoints[(namespace, pod, container_port)] = address
        self.loop.call_soon_threadsafe(self._kick)

    def log(self, namespace: str, pod: str, line: str) -> None:
        self.loop.call_soon_threadsafe(self._append_log, namespace, pod, [line])

    def end_pod(self, namespace: str, pod: str, exit_code: int, lines: list[str] = ()) -> None:  # type: ignore[assignment]
        self.loop.call_soon_threadsafe(self._end_pod, namespace, pod, exit_code, list(lines))

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.call(lambda: copy.deepcopy(self.objects.get((kind, namespace, name))))

    def list(self, kind: str, namespace: str = "", selector: str = "") -> list[dict[str, Any]]:
        def pick() -> list[dict[str, Any]]:
            return [
                copy.deepcopy(o)
                for (k, ns, _), o in sorted(self.objects.items())
                if k == kind
                and (not namespace or ns == namespace)
                and match_selector(o["metadata"].get("labels") or {}, selector)
            ]

        return self.call(pick)

    # -- HTTP ----------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        try:
            return await self._route(request)
        except ApiError as exc:
            return web.json_response(exc.status(), status=exc.code)

    async def _route(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if request.path in ("/version", "/version/"):
            return web.json_response(
                {
                    "major": "1",
                    "minor": "32",
                    "gitVersion": "v1.32.0",
                    "platform": "linux/amd64",
                    "goVersion": "go1.23.4",
                    "compiler": "gc",
                    "gitCommit": "emulator",
                    "gitTreeState": "clean",
                    "buildDate": "2024-12-11T00:00:00Z",
                }
            )
        if parts == ["openapi", "v2"]:
            return web.Response(body=OPENAPI_V2, headers={"Content-Type": OPENAPI_V2_TYPE})
        if parts and parts[0] == "openapi":
            return web.json_response(self._openapi(parts[1:]))
        if request.path in ("/healthz", "/readyz", "/livez"):
            return web.Response(text="ok")
        if parts == ["api"]:
            return web.json_response(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}
                    ],
                }
            )
        if parts == ["apis"]:
            groups = []
            for group, version in self._groups():
                if not group:
                    continue
                gv = {"groupVersion": f"{group}/{version}", "version": version}
                groups.append({"name": group, "versions": [gv], "preferredVersion": gv})
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        if parts and parts[0] == "api" and len(parts) == 2:
            return web.json_response(self._resource_list("", parts[1]))
        if parts and parts[0] == "apis" and len(parts) == 2:
            group = parts[1]
            versions = [v for g, v in self._groups() if g == group]
            if not versions:
                raise self._not_found_path(request)
            gv = {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]}
            return web.json_response(
                {
                    "kind": "APIGroup",
                    "apiVersion": "v1",
                    "name": group,
                    "versions": [gv],
                    "preferredVersion": gv,
                }
            )
        if parts and parts[0] == "apis" and len(parts) == 3:
            return web.json_response(self._resource_list(parts[1], parts[2]))
        # /api/v1/... or /apis/G/V/...
        if parts and parts[0] == "api":
            group, version, rest = "", parts[1] if len(parts) > 1 else "", parts[2:]
        elif parts and parts[0] == "apis" and len(parts) > 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise self._not_found_path(request)
        if (group, version) not in RESOURCES:
            raise self._not_found_path(request)
        namespace = ""
        if rest and rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        plural = rest[0] if rest else ""
        entry = next((r for r in RESOURCES[(group, version)] if r[0] == plural), None)
        if entry is None:
            raise self._not_found_path(request)
        _, kind, namespaced, _ = entry
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        gv = (group, version, plural, kind, namespaced)
        return await self._resource(request, gv, namespace, name, sub)

    def _openapi(self, parts: list[str]) -> dict[str, Any]:
        """Just enough OpenAPI v3 for kubectl to see that PATCH takes ``fieldValidation`` and
        so leave validation to the server (k8s.io/cli-runtime query_param_verifier_v3.go)."""
        if parts[:1] != ["v3"]:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if len(parts) == 1:
            return {
                "paths": {
                    ("api/" if not g else f"apis/{g}/") + v: {
                        "serverRelativeURL": "/openapi/v3/"
                        + ("api/" if not g else f"apis/{g}/")
                        + f"{v}?hash=emulator"
                    }
                    for g, v in RESOURCES
                }
            }
        rest = parts[1:]
        group, version = ("", rest[1]) if rest[0] == "api" else (rest[1], rest[2])
        if (group, version) not in RESOURCES:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        prefix = f"/api/{version}" if not group else f"/apis/{group}/{version}"
        paths = {}
        for plural, kind, namespaced, _ in RESOURCES[(group, version)]:
            path = (
                f"{prefix}/namespaces/{{namespace}}/{plural}/{{name}}"
                if namespaced
                else f"{prefix}/{plural}/{{name}}"
            )
            gvk = {"group": group, "version": version, "kind": kind}
            paths[path] = {
                "patch": {
                    "operationId": f"patch{kind}",
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": gvk,
                    "responses": {"200": {"description": "OK"}},
                },
                "parameters": [
                    {"name": n, "in": "query", "schema": {"type": "string"}}
                    for n in ("dryRun", "fieldManager", "fieldValidation", "force")
                ],
            }
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.32.0"},
            "paths": paths,
            "components": {"schemas": {}},
        }

    def _not_found_path(self, request: web.Request) -> ApiError:
        return ApiError(404, "NotFound", "the server could not find the requested resource", {})

    def _groups(self) -> dict[tuple[str, str], list[tuple[str, str, bool, list[str]]]]:
        """What discovery lists: metrics.k8s.io only while metrics-server "runs"."""
        return {**RESOURCES, **({METRICS_API: METRICS_RESOURCES} if self.metrics_server else {})}

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        groups = self._groups()
        if (group, version) not in groups:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        resources = []
        for plural, kind, namespaced, short in groups[(group, version)]:
            singular = kind.lower()
            resources.append(
                {
                    "name": plural,
                    "singularName": singular,
                    "namespaced": namespaced,
                    "kind": kind,
                    "verbs": VERBS,
                    **({"shortNames": short} if short else {}),
                }
            )
            for sub in SUBRESOURCES.get(plural, []):
                resources.append(
                    {
                        "name": f"{plural}/{sub}",
                        "singularName": "",
                        "namespaced": namespaced,
                        "kind": {"log": "Pod", "portforward": "PodPortForwardOptions"}.get(
                            sub, "Scale" if sub == "scale" else kind
                        ),
                        "verbs": ["create", "get"]
                        if sub in ("portforward", "exec")
                        else ["get", "patch", "update"],
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": api_version(group, version),
            "resources": resources,
        }

    async def _resource(
        self, request: web.Request, gv: tuple, namespace: str, name: str, sub: str
    ) -> web.StreamResponse:
        _group, _version, plural, _kind, namespaced = gv
        q = request.query
        dry = q.get("dryRun") == "All"
        if namespaced and not namespace and request.method == "POST":
            raise ApiError(400, "BadRequest", "the server could not find the requested resource")
        if sub == "log":
            return await self._pod_log(request, namespace, name)
        if sub == "portforward":
            return await self._portforward(request, namespace, name)
        if sub and sub not in ("status",):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        method = request.method
        # Non-apply writes without fieldManager: the User-Agent's product name (the
        # apiserver's default, e.g. "kubectl-create", "OpenAPI-Generator").
        manager = q.get("fieldManager") or request.headers.get("User-Agent", "").split("/")[0]
        if method == "GET" and not name:
            if q.get("watch") in ("1", "true"):
                raise ApiError(405, "MethodNotAllowed", "watch is not supported by the emulator")
            return web.json_response(
                self._list(gv, namespace, q.get("labelSelector", ""), q.get("fieldSelector", ""))
            )
        if method == "GET":
            return web.json_response(self._get(gv, namespace, name))
        if method == "POST" and not name:
            body = await self._body(request)
            return web.json_response(self._create(gv, namespace, body, dry, manager), status=201)
        if method == "PATCH" and name:
            body = await self._body(request)
            ctype = request.content_type
            return web.json_response(self._patch(gv, namespace, name, body, ctype, q, dry, manager))
        if method == "PUT" and name:
            body = await self._body(request)
            return web.json_response(self._replace(gv, namespace, name, body, sub, dry, manager))
        if method == "DELETE" and name:
            policy = q.get("propagationPolicy", "")
            with contextlib.suppress(ValueError):
                raw = await request.read()
                if raw:
                    policy = json.loads(raw).get("propagationPolicy") or policy
            return web.json_response(self._delete(gv, namespace, name, policy, dry))
        raise ApiError(
            405, "MethodNotAllowed", f"the server does not allow this method on {plural}"
        )

    async def _body(self, request: web.Request) -> dict[str, Any]:
        if "protobuf" in request.content_type or "cbor" in request.content_type:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f"include: application/json, application/yaml (not {request.content_type})",
            )
        raw = await request.read()
        try:
            body = yaml.safe_load(raw)  # JSON is YAML
        except yaml.YAMLError as exc:
            raise ApiError(400, "BadRequest", f"error decoding the body: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body is not an object")
        return body

    # -- storage -------------------------------------------------------------------------------

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _check_reject(self, verb: str, kind: str, name: str) -> None:
        err = self.reject.pop((verb, kind, name), None)
        if err is not None:
            raise err

    def _not_found(self, plural: str, group: str, name: str) -> ApiError:
        return ApiError(
            404,
            "NotFound",
            f'{qualified(plural, group)} "{name}" not found',
            object_details(plural, group, name),
        )

    def _list(self, gv: tuple, namespace: str, selector: str, fields: str = "") -> dict[str, Any]:
        group, version, _plural, kind, _ = gv
        self._check_reject("list", kind, "")
        items = [
            copy.deepcopy(o)
            for (k, ns, _), o in sorted(self.objects.items())
            if k == kind
            and (not namespace or ns == namespace)
            and match_selector(o["metadata"].get("labels") or {}, selector)
            and match_fields(o, fields)
        ]
        for item in items:  # real list items carry no kind/apiVersion
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return {
            "kind": f"{kind}List",
            "apiVersion": api_version(group, version),
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    def _get(self, gv: tuple, namespace: str, name: str) -> dict[str, Any]:
        group, _, plural, kind, _ = gv
        self._check_reject("get", kind, name)
        found = self.objects.get((kind, namespace, name))
        if found is None:
            raise self._not_found(plural, group, name)
        return copy.deepcopy(found)

    def _admit(self, gv: tuple, namespace: str, name: str) -> None:
        """NamespaceLifecycle admission: no new objects in a missing or terminating namespace."""
        group, _, plural, _kind, namespaced = gv
        if not namespaced:
            return
        ns = self.objects.get(("Namespace", "", namespace))
        if ns is None:
            raise ApiError(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                {"name": namespace, "kind": "namespaces"},
            )
        if ns.get("status", {}).get("phase") == "Terminating":
            raise ApiError(
                403,
                "Forbidden",
                f'{qualified(plural, group)} "{name}" is forbidden: unable to create new content '
                f"in namespace {namespace} because it is being terminated",
                {"name": name, "group": group, "kind": plural},
            )

    def _validate(self, gv: tuple, body: dict[str, Any], name: str) -> None:
        group, _version, plural, kind, _ = gv
        causes = []
        if body.get("kind") and body["kind"] != kind:
            raise ApiError(
                400,
                "BadRequest",
                f"the body of the request was in an unknown format: kind {body['kind']} "
                f"sent to {plural}",
            )
        if not name:
            causes.append(
                {
                    "reason": "FieldValueRequired",
                    "message": "Required value: name or generateName is required",
                    "field": "metadata.name",
                }
            )
        elif not NAME_RE.match(name) or len(name) > 253:
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "message": f'Invalid value: "{name}": a lowercase RFC 1123 subdomain '
                    "must consist of lower case alphanumeric characters, '-' or '.'",
                    "field": "metadata.name",
                }
            )
        if kind == "Deployment":
            spec = body.get("spec") or {}
            selector = (spec.get("selector") or {}).get("matchLabels") or {}
            labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
            if not selector:
                causes.append(
                    {
                        "reason": "FieldValueRequired",
                        "message": "Required value",
                        "field": "spec.selector",
                    }
                )
            elif any(labels.get(k) != v for k, v in selector.items()):
                causes.append(
                    {
                        "reason": "FieldValueInvalid",
                        "message": "Invalid value: map[string]string{...}: `selector` does not "
                        "match template `labels`",
                        "field": "spec.template.metadata.labels",
                    }
                )
        if kind in ("Deployment", "Job", "Pod"):
            spec = body.get("spec") or {}
            pod_spec = spec if kind == "Pod" else (spec.get("template") or {}).get("spec") or {}
            for i, c in enumerate(pod_spec.get("containers") or []):
                if not c.get("image"):
                    causes.append(
                        {
                            "reason": "FieldValueRequired",
                            "message": "Required value",
                            "field": f"spec.template.spec.containers[{i}].image",
                        }
                    )
        if causes:
            what = f"{kind}.{group}" if group else kind
            text = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
            detail = f"[{text}]" if len(causes) > 1 else text
            raise ApiError(
                422,
                "Invalid",
                f'{what} "{name}" is invalid: {detail}',
                {"name": name, "group": group, "kind": kind, "causes": causes},
            )

    def _stamp(self, gv: tuple, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        group, version, _, kind, namespaced = gv
        obj["apiVersion"] = api_version(group, version)
        obj["kind"] = kind
        meta = obj.setdefault("metadata", {})
        if namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now())
        meta["resourceVersion"] = self._next_rv()
        if kind in ("Deployment", "ReplicaSet", "Job", "CronJob", "StatefulSet", "DaemonSet"):
            meta.setdefault("generation", 1)
        if kind == "Namespace":
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = obj.get("status") or {"phase": "Active"}
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        if kind == "Secret":
            data = dict(obj.get("data") or {})
            for k, v in (obj.pop("stringData", None) or {}).items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = data
            obj.setdefault("type", "Opaque")
        if kind == "PersistentVolumeClaim":
            # The DefaultStorageClass admission plugin names the default class when the claim
            # names none (plugin/pkg/admission/storage/storageclass/setdefault); a claim whose
            # class does not exist stays Pending (no provisioner acts on it).
            spec = obj.setdefault("spec", {})
            classes = {
                o["metadata"]["name"]: o
                for (k, _, _), o in self.objects.items()
                if k == "StorageClass"
            }
            default = next(
                (
                    n
                    for n, c in classes.items()
                    if (c["metadata"].get("annotations") or {}).get(
                        "storageclass.kubernetes.io/is-default-class"
                    )
                    == "true"
                ),
                None,
            )
            if spec.get("storageClassName") is None and default:
                spec["storageClassName"] = default
            bound = spec.get("storageClassName") in classes
            obj["status"] = {"phase": "Bound" if bound else "Pending"}
        if kind == "Service":
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("clusterIP", f"10.96.{self._rv % 250}.{(self._rv * 7) % 250 + 1}")
        if kind == "Deployment":
            spec = obj.setdefault("spec", {})
            spec.setdefault("replicas", 1)
            spec.setdefault("strategy", {"type": "RollingUpdate"})
        if kind == "Job":
            spec = obj.setdefault("spec", {})
            spec.setdefault("backoffLimit", 6)
            spec.setdefault("completions", 1)
            spec.setdefault("parallelism", 1)
            uid = meta["uid"]
            labels = {
                "controller-uid": uid,
                "batch.kubernetes.io/controller-uid": uid,
                "job-name": meta["name"],
                "batch.kubernetes.io/job-name": meta["name"],
            }
            meta.setdefault("labels", {}).update(
                {k: v for k, v in labels.items() if "job-name" in k}
            )
            tmeta = spec.setdefault("template", {}).setdefault("metadata", {})
            tmeta.setdefault("labels", {}).update(labels)
            spec.setdefault(
                "selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
            )
        return obj

    def _create(
        self,
        gv: tuple,
        namespace: str,
        body: dict[str, Any],
        dry: bool = False,
        manager: str = "kube-controller-manager",
    ) -> dict[str, Any]:
        group, _, plural, kind, namespaced = gv
        meta = body.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + suffix()
        name = meta.get("name", "")
        if namespaced and meta.get("namespace") and meta["namespace"] != namespace:
            raise ApiError(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on "
                "the request",
            )
        self._check_reject("create", kind, name)
        self._validate(gv, body, name)
        self._admit(gv, namespace, name)
        if (kind, namespace if namespaced else "", name) in self.objects:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{qualified(plural, group)} "{name}" already exists',
                object_details(plural, group, name),
            )
        obj = copy.deepcopy(body)
        obj.pop("status", None) if kind not in ("Pod",) else None
        if dry:
            return self._stamp(gv, namespace, obj)
        obj = self._stamp(gv, namespace, obj)
        self.objects[(kind, namespace if namespaced else "", name)] = obj
        self.owners[(kind, namespace if namespaced else "", name)] = {
            f: {manager} for f in field_leaves(body)
        }
        self._kick()
        return copy.deepcopy(obj)

    def _patch(
        self,
        gv: tuple,
        namespace: str,
        name: str,
        body: dict[str, Any],
        ctype: str,
        q: Any,
        dry: bool,
        manager: str = "",
    ) -> dict[str, Any]:
        group, version, plural, kind, namespaced = gv
        key = (kind, namespace if namespaced else "", name)
        current = self.objects.get(key)
        if ctype == "application/apply-patch+yaml":
            if not q.get("fieldManager"):
                raise ApiError(
                    422,
                    "Invalid",
                    'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
                    "is required for apply patch",
                )
            if body.get("metadata", {}).get("name", name) != name:
                raise ApiError(400, "BadRequest", "the name of the object does not match the URL")
            if current is None:
                return self._create(gv, namespace, body, dry, manager)
            self._check_reject("patch", kind, name)
            self._validate(gv, body, name)
            owners = self.owners.get(key, {})
            applied, have = field_leaves(body), field_leaves(current)
            force = q.get("force") in ("true", "1")
            conflicts = [
                (other, f)
                for f, value in applied.items()
                if have.get(f) != value
                for other in sorted(owners.get(f, set()) - {manager})
            ]
            if conflicts and not force:
                raise conflict_error(conflicts, api_version(group, version))
            merged = copy.deepcopy(body)
            # What other managers own stays; what this manager no longer applies goes.
            kept: dict[FieldPath, set[str]] = {}
            for f, who in owners.items():
                others = who - {manager}
                if f not in applied and others and f in have:
                    set_field(merged, f, have[f])
                    kept[f] = others
            for f, value in applied.items():
                shared = owners.get(f, set()) if have.get(f) == value and not force else set()
                kept[f] = shared | {manager}
            if not dry:
                self.owners[key] = kept
            meta = merged.setdefault("metadata", {})
            for k in ("uid", "creationTimestamp", "generation", "deletionTimestamp"):
                if k in current["metadata"]:
                    meta[k] = current["metadata"][k]
            if kind == "Namespace" or "status" in current:
                merged["status"] = current.get("status")
            if kind == "Secret" and "data" not in body and "stringData" not in body:
                merged["data"] = current.get("data")
        elif ctype in (
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
        ):
            if current is None:
                raise self._not_found(plural, group, name)
            self._check_reject("patch", kind, name)
            merged = merge_patch(current, body)
            self._take_changed(key, current, merged, manager, dry)
        else:
            raise ApiError(
                415, "UnsupportedMediaType", f"the media type {ctype!r} is not supported"
            )
        return self._update(gv, namespace, name, current, merged, dry)

    def _replace(
        self,
        gv: tuple,
        namespace: str,
        name: str,
        body: dict[str, Any],
        sub: str,
        dry: bool,
        manager: str = "",
    ) -> dict[str, Any]:
        group, _, plural, kind, namespaced = gv
        current = self.objects.get((kind, namespace if namespaced else "", name))
        if current is None:
            raise self._not_found(plural, group, name)
        if sub == "status":
            merged = copy.deepcopy(current)
            merged["status"] = body.get("status")
        else:
            merged = copy.deepcopy(body)
            merged["status"] = current.get("status")
            merged.setdefault("metadata", {})["uid"] = current["metadata"]["uid"]
            self._take_changed(
                (kind, namespace if namespaced else "", name), current, merged, manager, dry
            )
        return self._update(gv, namespace, name, current, merged, dry)

    def _take_changed(
        self,
        key: tuple[str, str, str],
        current: dict[str, Any],
        merged: dict[str, Any],
        manager: str,
        dry: bool,
    ) -> None:
        """An update (PUT, merge patch) owns the fields it changed (an "Update" manager)."""
        if dry or not manager:
            return
        before, after = field_leaves(current), field_leaves(merged)
        owners = {f: o for f, o in self.owners.get(key, {}).items() if f in after}
        owners.update({f: {manager} for f, v in after.items() if before.get(f) != v})
        self.owners[key] = owners

    def _update(
        self,
        gv: tuple,
        namespace: str,
        name: str,
        current: dict[str, Any],
        merged: dict[str, Any],
        dry: bool,
    ) -> dict[str, Any]:
        _, _, _, kind, namespaced = gv
        merged = self._stamp(gv, namespace, merged)
        if current.get("spec") != merged.get("spec") and "generation" in current["metadata"]:
            merged["metadata"]["generation"] = current["metadata"]["generation"] + 1
        if dry:
            return merged
        self.objects[(kind, namespace if namespaced else "", name)] = merged
        self._kick()
        return copy.deepcopy(merged)

    def _delete(
        self, gv: tuple, namespace: str, name: str, policy: str, dry: bool
    ) -> dict[str, Any]:
        group, _, plural, kind, namespaced = gv
        key = (kind, namespace if namespaced else "", name)
        self._check_reject("delete", kind, name)
        current = self.objects.get(key)
        if current is None:
            raise self._not_found(plural, group, name)
        if dry:
            return current
        if kind == "Namespace":
            if current["status"].get("phase") != "Terminating":
                current["status"] = {"phase": "Terminating"}
                current["metadata"]["deletionTimestamp"] = now()
                current["metadata"]["resourceVersion"] = self._next_rv()
                self.loop.call_later(self.terminate_s, self._finish_namespace, name)
            return copy.deepcopy(current)
        del self.objects[key]
        self.owners.pop(key, None)
        if kind == "Pod":
            self._pod_gone(current)
        if kind == "Job" and not policy:
            policy = "Orphan"  # the batch/v1 API's default (kubectl passes Background)
        if policy != "Orphan":
            self._delete_dependents(current)
        self._kick()
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {
                "name": name,
                "group": group,
                "kind": plural,
                "uid": current["metadata"]["uid"],
            },
        }

    def _delete_dependents(self, owner: dict[str, Any]) -> None:
        uid = owner["metadata"]["uid"]
        for key, obj in list(self.objects.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if any(r.get("uid") == uid for r in refs):
                del self.objects[key]
                if key[0] == "Pod":
                    self._pod_gone(obj)
                self._delete_dependents(obj)

    def _finish_namespace(self, name: str) -> None:
        for key, obj in list(self.objects.items()):
            if key[1] == name:
                del self.objects[key]
                if key[0] == "Pod":
                    self._pod_gone(obj)
        self.objects.pop(("Namespace", "", name), None)

    def _pod_gone(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        rt = self.runtime.get((meta["namespace"], meta["name"]))
        if rt is not None:
            rt.ended = True
            if rt.changed:
                rt.changed.set()
        if self.pod_deleted_hook is not None:
            self.loop.run_in_executor(None, self.pod_deleted_hook, copy.deepcopy(pod))

    # -- controller ----------------------------------------------------------------------------

    def _kick(self) -> None:
        """Reconcile after every write: cheap, and no polling for anything but probes."""
        if getattr(self, "_kicked", False):
            return
        self._kicked = True
        self.loop.call_soon(self._reconcile)

    def _reconcile(self) -> None:
        self._kicked = False
        for (kind, ns, _), obj in list(self.objects.items()):
            if kind == "HorizontalPodAutoscaler":
                self._autoscale(ns, obj)
            elif kind == "Deployment":
                self._deployment(ns, obj)
            elif kind == "Job":
                self._job(ns, obj)

    def _owned(self, kind: str, ns: str, uid: str) -> list[dict[str, Any]]:
        return [
            o
            for (k, n, _), o in self.objects.items()
            if k == kind
            and n == ns
            and any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])
        ]

    def _owner_ref(self, owner: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def _new_pod(
        self, ns: str, name: str, template: dict[str, Any], owner: dict[str, Any]
    ) -> dict[str, Any]:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                **copy.deepcopy(template.get("metadata") or {}),
                "name": name,
                "namespace": ns,
                "ownerReferences": [self._owner_ref(owner)],
            },
            "spec": {**copy.deepcopy(template.get("spec") or {}), "nodeName": "irisctl-test"},
        }
        pod = self._stamp(("", "v1", "pods", "Pod", True), ns, pod)
        containers = pod["spec"].get("containers") or []
        pod["status"] = {
            "phase": "Running",
            "hostIP": "192.168.49.2",
            "podIP": f"10.244.0.{self._rv % 250 + 2}",
            "startTime": now(),
            "qosClass": "Burstable",
            "conditions": self._conditions(False),
            "containerStatuses": [
                {
                    "name": c.get("name", "main"),
                    "image": c.get("image", ""),
                    "imageID": "docker://sha256:"
                    + hashlib.sha256(c.get("image", "").encode()).hexdigest(),
                    "containerID": "docker://" + uuid.uuid4().hex,
                    "ready": False,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": now()}},
                }
                for c in containers
            ],
        }
        self.objects[("Pod", ns, name)] = pod
        self.runtime[(ns, name)] = PodRuntime(changed=asyncio.Event())
        app = (pod["metadata"].get("labels") or {}).get(APP, "")
        trouble = self.container_trouble.get((ns, app))
        if trouble:
            self._trouble(pod, trouble)
            return pod
        if self.pod_hook is not None:
            self.loop.run_in_executor(None, self.pod_hook, copy.deepcopy(pod))
        return pod

    def _trouble(self, pod: dict[str, Any], trouble: dict[str, Any]) -> None:
        """A container that does not run, as the kubelet reports it (no pod_hook: no process)."""
        cs = pod["status"]["containerStatuses"][0]
        cs.update(ready=False, started=False)
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        if trouble["reason"] == "CrashLoopBackOff":
            cs["restartCount"] = trouble.get("restarts", 3)
            cs["state"] = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off 40s restarting failed container={cs['name']} "
                    f"pod={name}_{ns}({pod['metadata']['uid']})",
                }
            }
            cs["lastState"] = {
                "terminated": {"exitCode": 1, "reason": "Error", "finishedAt": now()}
            }
            self.runtime[(ns, name)].previous_log = list(trouble.get("previous_log", []))
        else:  # an image that cannot be pulled: ErrImagePull, then ImagePullBackOff
            pod["status"]["phase"] = "Pending"
            pod["status"].pop("podIP", None)
            image = cs["image"]
            cs["state"] = {
                "waiting": {
                    "reason": "ErrImagePull",
                    "message": f'failed to pull and unpack image "{image}": failed to resolve '
                    f"reference: pull access denied, repository does not exist",
                }
            }

            def back_off() -> None:
                cs["state"] = {
                    "waiting": {
                        "reason": "ImagePullBackOff",
                        "message": f'Back-off pulling image "{image}"',
                    }
                }
                pod["metadata"]["resourceVersion"] = self._next_rv()

            self.loop.call_later(self.pull_backoff_s, back_off)

    @staticmethod
    def _conditions(ready: bool, message: str = "") -> list[dict[str, Any]]:
        t = now()
        out = [
            {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": t},
            {"type": "Initialized", "status": "True", "lastTransitionTime": t},
        ]
        for kind in ("Ready", "ContainersReady"):
            c = {"type": kind, "status": "True" if ready else "False", "lastTransitionTime": t}
            if not ready:
                c["reason"] = "ContainersNotReady"
                c["message"] = message or "containers with unready status: [main]"
            out.append(c)
        out.append({"type": "PodScheduled", "status": "True", "lastTransitionTime": t})
        return out

    def _autoscale(self, ns: str, hpa: dict[str, Any]) -> None:
        """The HPA controller's floor and ceiling, without metrics: a Deployment below
        ``minReplicas`` is scaled up to it, one above ``maxReplicas`` down to it (kubernetes
        ``pkg/controller/podautoscaler/horizontal.go``: ``reconcileAutoscaler`` scales to
        ``minReplicas`` when the current count is below it, "Current number of replicas below
        Spec.MinReplicas", before it reads any metric; ``SuccessfulRescale`` Event). Its writes
        are Updates of the scale subresource by ``kube-controller-manager``, which then owns
        ``spec.replicas`` (server-side apply's "Transferring ownership")."""
        ref = hpa["spec"]["scaleTargetRef"]
        d = self.objects.get(("Deployment", ns, ref["name"]))
        if d is None or ref.get("kind") != "Deployment":
            return
        low = int(hpa["spec"].get("minReplicas", 1))
        high = int(hpa["spec"]["maxReplicas"])
        have = int(d["spec"].get("replicas", 1))
        want = min(max(have, low), high)
        hpa["status"] = {"currentReplicas": have, "desiredReplicas": want}
        if want != have:
            # Through the scale subresource, an Update by the controller manager: it owns
            # spec.replicas from then on, and an apply of another count conflicts with it.
            d["spec"]["replicas"] = want
            key = ("Deployment", ns, ref["name"])
            self.owners.setdefault(key, {})[("spec", "replicas")] = {"kube-controller-manager"}
            self.event(
                hpa,
                "SuccessfulRescale",
                f"New size: {want}; reason: Current number of replicas "
                + ("below Spec.MinReplicas" if want > have else "above Spec.MaxReplicas"),
                "Normal",
            )

    def _deployment(self, ns: str, d: dict[str, Any]) -> None:
        spec = d["spec"]
        want = int(spec.get("replicas", 1))
        template = spec.get("template") or {}
        h = template_hash(template)
        uid = d["metadata"]["uid"]
        sets = self._owned("ReplicaSet", ns, uid)
        current = next(
            (rs for rs in sets if rs["metadata"]["labels"].get("pod-template-hash") == h), None
        )
        name = d["metadata"]["name"]
        if current is None:
            labels = {**(template.get("metadata") or {}).get("labels", {}), "pod-template-hash": h}
            rs_template = copy.deepcopy(template)
            rs_template.setdefault("metadata", {})["labels"] = labels
            current = self._stamp(
                ("apps", "v1", "replicasets", "ReplicaSet", True),
                ns,
                {
                    "metadata": {
                        "name": f"{name}-{h}",
                        "labels": labels,
                        "ownerReferences": [self._owner_ref(d)],
                    },
                    "spec": {
                        "replicas": want,
                        "selector": {
                            "matchLabels": {
                                **spec["selector"]["matchLabels"],
                                "pod-template-hash": h,
                            }
                        },
                        "template": rs_template,
                    },
                },
            )
            self.objects[("ReplicaSet", ns, current["metadata"]["name"])] = current
        rs_uid = current["metadata"]["uid"]
        pods = self._owned("Pod", ns, rs_uid)
        refused = self._refused(ns, template)
        failure = None
        if refused and len(pods) < want:  # admission (quota, LimitRange, webhook) said no
            text = self._fail_create(current, refused)
            failure = {
                "type": "ReplicaFailure",
                "status": "True",
                "reason": "FailedCreate",
                "message": text,
                "lastTransitionTime": now(),
            }
        for _ in range(0 if refused else want - len(pods)):
            pods.append(
                self._new_pod(
                    ns,
                    f"{current['metadata']['name']}-{suffix()}",
                    current["spec"]["template"],
                    current,
                )
            )
        for extra in pods[want:]:
            self._remove_pod(ns, extra)
        pods = pods[:want]
        ready = [p for p in pods if _ready(p)]
        old = [rs for rs in sets if rs is not current]
        old_pods = [p for rs in old for p in self._owned("Pod", ns, rs["metadata"]["uid"])]
        if len(ready) >= want or spec.get("strategy", {}).get("type") == "Recreate":
            for p in old_pods:
                self._remove_pod(ns, p)
            for rs in old:
                rs["spec"]["replicas"] = 0
            old_pods = []
        old_ready = [p for p in old_pods if _ready(p)]
        total_ready = len(ready) + len(old_ready)
        current["status"] = {
            "replicas": len(pods),
            "readyReplicas": len(ready),
            "availableReplicas": len(ready),
            "fullyLabeledReplicas": len(pods),
            "observedGeneration": current["metadata"].get("generation", 1),
        }
        if failure:
            current["status"]["conditions"] = [failure]
        available = total_ready >= want
        t = now()
        status = {
            "observedGeneration": d["metadata"].get("generation", 1),
            "replicas": len(pods) + len(old_pods),
            "updatedReplicas": len(pods),
            "readyReplicas": total_ready,
            "availableReplicas": total_ready,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True" if available else "False",
                    "reason": "MinimumReplicasAvailable"
                    if available
                    else "MinimumReplicasUnavailable",
                    "message": "Deployment has minimum availability."
                    if available
                    else "Deployment does not have minimum availability.",
                    "lastUpdateTime": t,
                    "lastTransitionTime": t,
                },
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable"
                    if len(ready) >= want
                    else "ReplicaSetUpdated",
                    "message": f'ReplicaSet "{current["metadata"]["name"]}" '
                    + ("has successfully progressed." if len(ready) >= want else "is progressing."),
                    "lastUpdateTime": t,
                    "lastTransitionTime": t,
                },
            ],
        }
        if failure:
            status["conditions"].append(
                {**failure, "lastUpdateTime": failure["lastTransitionTime"]}
            )
        if status["replicas"] - total_ready:
            status["unavailableReplicas"] = status["replicas"] - total_ready
        for k in ("readyReplicas", "availableReplicas"):
            if not status[k]:
                del status[k]  # omitempty, as the real API serializes zero counts
        if d.get("status") != status:
            old_conds = {c["type"]: c for c in (d.get("status") or {}).get("conditions", [])}
            for c in status["conditions"]:
                prev = old_conds.get(c["type"])
                if prev and prev["status"] == c["status"]:
                    c["lastTransitionTime"] = prev["lastTransitionTime"]
            d["status"] = status

    def _refused(self, ns: str, template: dict[str, Any]) -> str | None:
        """Why admission refuses a pod of this template (``pod_create_error``), or None."""
        app = (template.get("metadata") or {}).get("labels", {}).get(APP, "")
        return self.pod_create_error.get((ns, app))

    def _fail_create(self, owner: dict[str, Any], refused: str) -> str:
        """A refused pod create, as the controllers' RealPodControl
        (pkg/controller/controller_utils.go) records it: a Warning Event "FailedCreate",
        "Error creating: <the API error>", on the owner. Returns the error's text."""
        text = f'pods "{owner["metadata"]["name"]}-{suffix()}" is forbidden: {refused}'
        self.event(owner, "FailedCreate", f"Error creating: {text}")
        return text

    def event(self, obj: dict[str, Any], reason: str, message: str, kind: str = "Warning") -> None:
        """Record an Event as the kubelet or a controller does (repeats bump ``count``)."""
        meta = obj["metadata"]
        ns = meta.get("namespace", "")
        name = f"{meta['name']}.{hashlib.sha256(reason.encode()).hexdigest()[:16]}"
        t = now()
        found = self.objects.get(("Event", ns, name))
        if found is not None:
            found["count"] += 1
            found["lastTimestamp"] = t
            found["message"] = message
            found["metadata"]["resourceVersion"] = self._next_rv()
            return
        source = (
            "kubelet" if obj.get("kind") == "Pod" else f"{obj.get('kind', '').lower()}-controller"
        )
        self.objects[("Event", ns, name)] = self._stamp(
            ("", "v1", "events", "Event", True),
            ns,
            {
                "metadata": {"name": name},
                "involvedObject": {
                    "apiVersion": obj.get("apiVersion", "v1"),
                    "kind": obj.get("kind", ""),
                    "name": meta["name"],
                    "namespace": ns,
                    "uid": meta.get("uid", ""),
                },
                "reason": reason,
                "message": message,
                "type": kind,
                "count": 1,
                "firstTimestamp": t,
                "lastTimestamp": t,
                "source": {"component": source},
                "reportingComponent": source,
            },
        )

    # -- the CronJob controller (driven by the test's clock) -------------------------------------

    def cronjob_sync(self, at: datetime.datetime) -> None:
        """Run the CronJob controller once, as if the time were ``at`` (UTC)."""

        def sync() -> None:
            for (kind, ns, _), obj in list(self.objects.items()):
                if kind == "CronJob":
                    self._cronjob(ns, obj, at)
            self._kick()

        self.call(sync)

    def _cronjob(self, ns: str, cj: dict[str, Any], at: datetime.datetime) -> None:
        spec, st = cj["spec"], cj.setdefault("status", {})
        for ref in list(st.get("active") or []):
            job = self.objects.get(("Job", ns, ref["name"]))
            conditions = ((job or {}).get("status") or {}).get("conditions") or []
            done = {c["type"] for c in conditions if c.get("status") == "True"}
            if job is None or done & {"Complete", "Failed"}:
                st["active"] = [r for r in st["active"] if r["name"] != ref["name"]]
                if "Complete" in done:
                    st["lastSuccessfulTime"] = job["status"].get("completionTime", now())  # type: ignore[index]
        if not st.get("active"):
            st.pop("active", None)
        if spec.get("suspend"):
            return
        scheduled, many = _most_recent_schedule(cj, at)
        if scheduled is None:
            return
        if many:
            self.event(
                cj,
                "TooManyMissedTimes",
                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or "
                "check clock skew",
            )
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None and scheduled + datetime.timedelta(seconds=deadline) < at:
            self.event(
                cj,
                "MissSchedule",
                "Missed scheduled time to start a job: "
                + scheduled.strftime("%a, %d %b %Y %H:%M:%S +0000"),
            )
            return
        job_name = f"{cj['metadata']['name']}-{int(scheduled.timestamp()) // 60}"
        active = st.get("active") or []
        if any(r["name"] == job_name for r in active) or st.get("lastScheduleTime") == _stamp_of(
            scheduled
        ):
            return
        if spec.get("concurrencyPolicy") == "Forbid" and active:
            self.event(
                cj,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is "
                "Forbid",
                kind="Normal",
            )
            return
        template = spec["jobTemplate"]
        job = self._stamp(
            ("batch", "v1", "jobs", "Job", True),
            ns,
            {
                "metadata": {
                    "name": job_name,
                    "labels": dict((template.get("metadata") or {}).get("labels") or {}),
                    "annotations": {
                        **((template.get("metadata") or {}).get("annotations") or {}),
                        "batch.kubernetes.io/cronjob-scheduled-timestamp": _stamp_of(scheduled),
                    },
                    "ownerReferences": [self._owner_ref(cj)],
                },
                "spec": copy.deepcopy(template["spec"]),
            },
        )
        self.objects[("Job", ns, job_name)] = job
        self.event(cj, "SuccessfulCreate", f"Created job {job_name}", kind="Normal")
        st["active"] = [
            *active,
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": job_name,
                "namespace": ns,
                "uid": job["metadata"]["uid"],
            },
        ]
        st["lastScheduleTime"] = _stamp_of(scheduled)
        cj["metadata"]["resourceVersion"] = self._next_rv()

    def _remove_pod(self, ns: str, pod: dict[str, Any]) -> None:
        if self.objects.pop(("Pod", ns, pod["metadata"]["name"]), None) is not None:
            self._pod_gone(pod)

    def _job(self, ns: str, job: dict[str, Any]) -> None:
        if job.get("status", {}).get("conditions"):
            done = [c for c in job["status"]["conditions"] if c["type"] in ("Complete", "Failed")]
            if done:
                return
        uid = job["metadata"]["uid"]
        pods = self._owned("Pod", ns, uid)
        name = job["metadata"]["name"]
        st = job.setdefault("status", {})
        failed = [p for p in pods if p["status"]["phase"] == "Failed"]
        succeeded = [p for p in pods if p["status"]["phase"] == "Succeeded"]
        running = [p for p in pods if p["status"]["phase"] not in ("Succeeded", "Failed")]
        verdicts = [_pod_failure_policy(job, p) for p in failed]
        counted = [p for p, (action, _) in zip(failed, verdicts, strict=True) if action == "Count"]
        if counted:
            st["failed"] = len(counted)
        fail_job = next((msg for action, msg in verdicts if action == "FailJob"), None)
        if fail_job and not running:
            self._fail_job(job, "PodFailurePolicy", fail_job)
            return
        backoff_left = len(counted) <= int(job["spec"].get("backoffLimit", 6))
        refused = self._refused(ns, job["spec"]["template"])
        if refused and not running and not succeeded and backoff_left:
            self._fail_create(job, refused)  # unlike a ReplicaSet, a Job gets no condition
            return
        if not running and not succeeded and backoff_left:  # start (or retry, backoffLimit)
            pod = self._new_pod(ns, f"{name}-{suffix()}", job["spec"]["template"], job)
            st.setdefault("startTime", now())
            st.update({"active": 1, "ready": 0, "terminating": 0})
            st.setdefault("uncountedTerminatedPods", {})
            outcome = self.job_outcome(name, copy.deepcopy(pod))
            if outcome is not None:
                code, lines = outcome
                self.loop.call_later(0.05, self._end_pod, ns, pod["metadata"]["name"], code, lines)
            return
        if running:
            return
        pod = (succeeded or failed)[-1]
        t = now()
        ok = pod["status"]["phase"] == "Succeeded"
        st = job["status"]
        st.pop("active", None)
        st["ready"] = 0
        if ok:
            st["succeeded"] = 1
            st.pop("failed", None) if not failed else None
            st["completionTime"] = t
            st["conditions"] = [
                {
                    "type": "SuccessCriteriaMet",
                    "status": "True",
                    "reason": "CompletionsReached",
                    "message": "Reached expected number of succeeded pods",
                    "lastProbeTime": t,
                    "lastTransitionTime": t,
                },
                {
                    "type": "Complete",
                    "status": "True",
                    "reason": "CompletionsReached",
                    "message": "Reached expected number of succeeded pods",
                    "lastProbeTime": t,
                    "lastTransitionTime": t,
                },
            ]
            job["metadata"]["resourceVersion"] = self._next_rv()
        else:
            self._fail_job(
                job, "BackoffLimitExceeded", "Job has reached the specified backoff limit"
            )

    def _fail_job(self, job: dict[str, Any], reason: str, message: str) -> None:
        t = now()
        st = job.setdefault("status", {})
        st.pop("active", None)
        st["ready"] = 0
        st["conditions"] = [
            {
                "type": kind,
                "status": "True",
                "reason": reason,
                "message": message,
                "lastProbeTime": t,
                "lastTransitionTime": t,
            }
            for kind in ("FailureTarget", "Failed")
        ]
        job["metadata"]["resourceVersion"] = self._next_rv()

    def _append_log(self, ns: str, pod: str, lines: list[str]) -> None:
        rt = self.runtime.setdefault((ns, pod), PodRuntime(changed=asyncio.Event()))
        rt.log.extend(lines)
        if rt.changed:
            rt.changed.set()

    def _end_pod(self, ns: str, name: str, code: int, lines: list[str]) -> None:
        self._append_log(ns, name, lines)
        rt = self.runtime[(ns, name)]
        rt.ended = True
        if rt.changed:
            rt.changed.set()
        pod = self.objects.get(("Pod", ns, name))
        if pod is None:
            return
        t = now()
        pod["status"]["phase"] = "Succeeded" if code == 0 else "Failed"
        pod["status"]["conditions"] = self._conditions(False, "")
        for c in pod["status"]["conditions"]:
            if c["type"] in ("Ready", "ContainersReady"):
                c["reason"] = "PodCompleted"
                c.pop("message", None)
        for cs in pod["status"]["containerStatuses"]:
            cs["ready"] = False
            cs["started"] = False
            cs["state"] = {
                "terminated": {
                    "exitCode": code,
                    "reason": "Completed" if code == 0 else "Error",
                    "startedAt": cs["state"].get("running", {}).get("startedAt", t),
                    "finishedAt": t,
                    "containerID": cs["containerID"],
                }
            }
        pod["metadata"]["resourceVersion"] = self._next_rv()
        self._kick()

    async def _prober(self) -> None:
        """The kubelet's probes against each pod's mapped real server, every ``probe_s``.

        As pkg/kubelet/prober/worker.go runs them: until the startupProbe succeeds neither
        liveness nor readiness runs, and the container counts as not ready; each probe runs every
        ``periodSeconds`` (default 10) after ``initialDelaySeconds``; ``failureThreshold``
        (default 3) consecutive failures of the startup or liveness probe kill the container,
        which restarts (restartCount + 1, lastState terminated 137, a Normal ``Killing`` Event
        "Container C failed liveness probe, will be restarted"); a readiness failure only makes
        it unready. Each tick advances the pods' clocks by ``probe_clock_s`` pod-seconds, so a
        test can run a minute of probing in a second. With ``probe_clock_s`` None (the default)
        only the readinessProbe runs, at every tick, whatever its period.
        """
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                changed = False
                for (kind, ns, name), pod in list(self.objects.items()):
                    if kind != "Pod" or pod["status"]["phase"] != "Running":
                        continue
                    if "running" not in pod["status"]["containerStatuses"][0]["state"]:
                        continue  # crash-looping or never started: no probes
                    rt = self.runtime.setdefault((ns, name), PodRuntime(changed=asyncio.Event()))
                    changed |= await self._probe_pod(session, ns, pod, rt)
                    rt.clock += self.probe_clock_s or 0.0
                if changed:
                    self._reconcile()
                await asyncio.sleep(self.probe_s)

    async def _probe_pod(self, session: Any, ns: str, pod: dict[str, Any], rt: PodRuntime) -> bool:
        """One tick of one pod's probe workers; True if its readiness changed."""
        container = (pod["spec"].get("containers") or [{}])[0]
        if self.probe_clock_s is None:  # readiness only, every tick (fast for most tests)
            probe = container.get("readinessProbe")
            ok, message = (
                await self._probe(session, ns, pod, probe, "Readiness") if probe else (True, "")
            )
            if not ok:
                self.event(pod, "Unhealthy", message)
            return self._set_ready(pod, ok)
        if not rt.started:
            outcome = await self._run_probe(session, ns, pod, rt, "startup")
            if outcome is None or outcome == "success":
                rt.started = outcome == "success" or "startupProbe" not in container
            if outcome == "kill":
                self._kill_container(pod, rt, "startup")
            if not rt.started:
                return self._set_ready(pod, False)
        if await self._run_probe(session, ns, pod, rt, "liveness") == "kill":
            self._kill_container(pod, rt, "liveness")
            return self._set_ready(pod, False)
        readiness = await self._run_probe(session, ns, pod, rt, "readiness")
        if readiness is None:  # not due yet: readiness stays as it was
            return False
        return self._set_ready(pod, readiness == "success")

    async def _run_probe(
        self, session: Any, ns: str, pod: dict[str, Any], rt: PodRuntime, which: str
    ) -> str | None:
        """ "success", "failure", "kill" (threshold reached), or None when not due / absent."""
        container = (pod["spec"].get("containers") or [{}])[0]
        probe = container.get(f"{which}Probe")
        if not probe:
            return "success" if which == "readiness" else None
        due = rt.due.get(which, float(probe.get("initialDelaySeconds", 0)))
        if rt.clock < due:
            return None
        rt.due[which] = rt.clock + float(probe.get("periodSeconds", 10))
        ok, message = await self._probe(session, ns, pod, probe, which.capitalize())
        if ok:
            rt.failures[which] = 0
            return "success"
        self.event(pod, "Unhealthy", message)
        rt.failures[which] = rt.failures.get(which, 0) + 1
        if which != "readiness" and rt.failures[which] >= int(probe.get("failureThreshold", 3)):
            return "kill"
        return "failure"

    def _kill_container(self, pod: dict[str, Any], rt: PodRuntime, which: str) -> None:
        cs = pod["status"]["containerStatuses"][0]
        t = now()
        self.event(
            pod,
            "Killing",
            f"Container {cs['name']} failed {which} probe, will be restarted",
            kind="Normal",
        )
        started = cs["state"].get("running", {}).get("startedAt", t)
        cs["lastState"] = {
            "terminated": {
                "exitCode": 137,
                "reason": "Error",
                "startedAt": started,
                "finishedAt": t,
                "containerID": cs["containerID"],
            }
        }
        cs["restartCount"] = int(cs.get("restartCount", 0)) + 1
        cs["state"] = {"running": {"startedAt": t}}
        cs["started"] = False
        rt.clock, rt.started, rt.due, rt.failures = 0.0, False, {}, {}
        pod["metadata"]["resourceVersion"] = self._next_rv()

    def _set_ready(self, pod: dict[str, Any], ready: bool) -> bool:
        if ready == _ready(pod):
            return False
        pod["status"]["conditions"] = self._conditions(ready)
        for cs in pod["status"]["containerStatuses"]:
            cs["ready"] = ready
        pod["metadata"]["resourceVersion"] = self._next_rv()
        return True

    @staticmethod
    def container_port(pod: dict[str, Any], port: int | str) -> int | None:
        """A port number, or a named containerPort resolved as the kubelet does."""
        for c in pod["spec"].get("containers") or []:
            for p in c.get("ports") or []:
                if port in (p.get("name"), p.get("containerPort")):
                    return int(p["containerPort"])
        return port if isinstance(port, int) else None

    def address(self, ns: str, pod: dict[str, Any], port: int | str) -> tuple[str, int] | None:
        """The real local server that answers ``port`` (number or name) of this pod."""
        number = self.container_port(pod, port)
        if number is None:
            return None
        name = pod["metadata"]["name"]
        found = self.pod_endpoints.get((ns, name, number))
        if found is None:
            app = (pod["metadata"].get("labels") or {}).get(APP, "")
            found = self.endpoints.get((app, number))
        return found

    async def _probe(
        self, session: Any, ns: str, pod: dict[str, Any], probe: dict[str, Any], which: str
    ) -> tuple[bool, str]:
        import aiohttp

        http = probe.get("httpGet")
        if not http:
            return True, ""  # exec/tcp probes: taken as passing
        address = self.address(ns, pod, http.get("port"))
        if address is None:
            number = self.container_port(pod, http.get("port"))
            return False, (
                f'{which} probe failed: Get "http://{pod["status"]["podIP"]}:{number}'
                f'{http.get("path", "/")}": dial tcp: connect: connection refused'
            )
        url = f"http://{address[0]}:{address[1]}{http.get('path', '/')}"
        try:
            async with session.get(url) as resp:
                if 200 <= resp.status < 400:
                    return True, ""
                return (
                    False,
                    f"{which} probe failed: HTTP probe failed with statuscode: {resp.status}",
                )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            # Worded as the kubelet's prober does, with the pod's IP and port, not ours.
            number = self.container_port(pod, http.get("port"))
            shown = f"http://{pod['status']['podIP']}:{number}{http.get('path', '/')}"
            cause = (
                "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                if isinstance(exc, TimeoutError)
                else f"dial tcp {pod['status']['podIP']}:{number}: connect: connection refused"
            )
            return False, f'{which} probe failed: Get "{shown}": {cause}'

    # -- logs ----------------------------------------------------------------------------------

    async def _pod_log(self, request: web.Request, ns: str, name: str) -> web.StreamResponse:
        pod = self.objects.get(("Pod", ns, name))
        if pod is None:
            raise self._not_found("pods", "", name)
        rt = self.runtime.setdefault((ns, name), PodRuntime(changed=asyncio.Event()))
        q = request.query
        state = pod["status"]["containerStatuses"][0]["state"]
        if (
            q.get("previous") not in ("true", "1")
            and "waiting" in state
            and (state["waiting"]["reason"] != "CrashLoopBackOff")
        ):
            raise ApiError(
                400,
                "BadRequest",
                f'container "{pod["spec"]["containers"][0]["name"]}" in pod "{name}" is waiting '
                f"to start: {state['waiting']['reason']}",
            )
        if q.get("previous") in ("true", "1") and rt.previous_log:
            lines = list(rt.previous_log)
            if q.get("tailLines"):
                lines = lines[-int(q["tailLines"]) :]
            return web.Response(text="".join(ln + "\n" for ln in lines), content_type="text/plain")
        if q.get("previous") in ("true", "1"):
            raise ApiError(
                400,
                "BadRequest",
                f'previous terminated container "{pod["spec"]["containers"][0]["name"]}" in pod '
                f'"{name}" not found',
            )
        lines = list(rt.log)
        if q.get("tailLines"):
            lines = lines[-int(q["tailLines"]) :] if int(q["tailLines"]) else []
        if q.get("follow") not in ("true", "1"):
            text = "".join(line + "\n" for line in lines)
            return web.Response(text=text, content_type="text/plain")
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        sent = len(rt.log)
        for line in lines:
            await resp.write(line.encode() + b"\n")
        assert rt.changed is not None
        while True:
            while sent < len(rt.log):
                await resp.write(rt.log[sent].encode() + b"\n")
                sent += 1
            if rt.ended or ("Pod", ns, name) not in self.objects:
                break
            rt.changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(rt.changed.wait(), 1.0)
        await resp.write_eof()
        return resp

    # -- port-forward --------------------------------------------------------------------------

    async def _portforward(self, request: web.Request, ns: str, name: str) -> web.StreamResponse:
        pod = self.objects.get(("Pod", ns, name))
        if pod is None:
            raise self._not_found("pods", "", name)
        ports = [int(p) for p in request.query.get("ports", "").split(",") if p]
        if not ports:
            raise ApiError(400, "BadRequest", 'query parameter "port" is required')
        if pod["status"]["phase"] != "Running":
            raise ApiError(
                400, "BadRequest", f"pod {name} is not running (phase {pod['status']['phase']})"
            )
        ws = web.WebSocketResponse(protocols=("v4.channel.k8s.io",), autoping=True, max_msg_size=0)
        if not ws.can_prepare(request).ok:
            raise ApiError(400, "BadRequest", "Upgrade request required")
        await ws.prepare(request)
        self.forwards += 1
        writers: dict[int, asyncio.StreamWriter] = {}
        tasks = []
        for i, port in enumerate(ports):
            for ch in (2 * i, 2 * i + 1):
                await ws.send_bytes(bytes([ch]) + port.to_bytes(2, "little"))
            address = self.address(ns, pod, port)
            try:
                if address is None:
                    raise ConnectionRefusedError("connection refused")
                reader, writer = await asyncio.open_connection(*address)
            except OSError:
                uid = pod["metadata"]["uid"]
                await ws.send_bytes(
                    bytes([2 * i + 1])
                    + (
                        f"error forwarding port {port} to pod {uid}, uid : failed to execute "
                        f'portforward in network namespace "/var/run/netns/cni-{uid[:8]}": '
                        f"failed to connect to localhost:{port} inside namespace "
                        f'"{uid[:12]}", IPv4: dial tcp4 127.0.0.1:{port}: connect: '
                        "connection refused IPv6 dial tcp6: address localhost: no suitable "
                        "address found "
                    ).encode()
                )
                continue
            writers[2 * i] = writer
            tasks.append(asyncio.create_task(self._pump_out(ws, reader, 2 * i)))
        if not writers:
            await ws.close()
            return ws
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY and msg.data:
                    writer = writers.get(msg.data[0])
                    if writer is not None:
                        writer.write(msg.data[1:])
                        await writer.drain()
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            for task in tasks:
                task.cancel()
            for writer in writers.values():
                writer.close()
            await ws.close()
        return ws

    @staticmethod
    async def _pump_out(ws: web.WebSocketResponse, reader: asyncio.StreamReader, ch: int) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await ws.send_bytes(bytes([ch]) + data)
        except (ConnectionError, OSError):
            pass
        await ws.close()


def _pod_failure_policy(job: dict[str, Any], pod: dict[str, Any]) -> tuple[str, str]:
    """(action, message) for a failed pod, as pkg/controller/job/pod_failure_policy.go
    ``matchPodFailurePolicy`` decides: the first rule that matches (``onExitCodes`` on a
    terminated container's non-zero exit code, In/NotIn; ``onPodConditions`` by type and status)
    gives ``FailJob`` (with the controller's message), ``Ignore`` (not counted towards
    ``backoffLimit``) or ``Count``; no rule, or no match, counts."""
    policy = job["spec"].get("podFailurePolicy") or {}
    for index, rule in enumerate(policy.get("rules") or []):
        matched = ""
        codes = rule.get("onExitCodes")
        if codes:
            for cs in pod["status"].get("containerStatuses") or []:
                ended = (cs.get("state") or {}).get("terminated") or {}
                code = ended.get("exitCode")
                if not code or codes.get("containerName") not in (None, cs["name"]):
                    continue
                if (code in codes["values"]) == (codes["operator"] == "In"):
                    matched = (
                        f"Container {cs['name']} for pod {pod['metadata']['namespace']}/"
                        f"{pod['metadata']['name']} failed with exit code {code} matching "
                        f"{rule['action']} rule at index {index}"
                    )
                    break
        for want in rule.get("onPodConditions") or []:
            for cond in pod["status"].get("conditions") or []:
                if cond["type"] == want["type"] and cond["status"] == want.get("status", "True"):
                    matched = f"Pod {pod['metadata']['name']} has condition {cond['type']}"
        if matched:
            return rule["action"], matched
    return "Count", ""


def _stamp_of(t: datetime.datetime) -> str:
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def _most_recent_schedule(
    cj: dict[str, Any], at: datetime.datetime
) -> tuple[datetime.datetime | None, bool]:
    """(the most recent unmet schedule time or None, whether more than 100 were missed), as
    ``mostRecentScheduleTime(cj, now, schedule, includeStartingDeadlineSeconds=true)``."""
    st = cj.get("status") or {}
    earliest = _parse_time(st.get("lastScheduleTime") or cj["metadata"]["creationTimestamp"])
    deadline = cj["spec"].get("startingDeadlineSeconds")
    if deadline is not None:
        earliest = max(earliest, at - datetime.timedelta(seconds=deadline))
    schedule = croniter(cj["spec"]["schedule"], earliest)
    t1 = schedule.get_next(datetime.datetime)
    t2 = schedule.get_next(datetime.datetime)
    if at < t1:
        return None, False
    if at < t2:
        return t1, False
    # The controller's approximation: missed = elapsed / (t2 - t1) + 1, then walks to the last.
    missed = int((at - t1).total_seconds() // (t2 - t1).total_seconds()) + 1
    walk = croniter(cj["spec"]["schedule"], t1 + (missed - 2) * (t2 - t1))
    recent = None
    while (t := walk.get_next(datetime.datetime)) <= at:
        recent = t
    return recent, missed > 100


def _ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions") or []
    )


def _ready_message(pod: dict[str, Any]) -> str:
    for c in pod.get("status", {}).get("conditions") or []:
        if c["type"] == "Ready":
            return str(c.get("message", ""))
    return ""
