"""The Kubernetes targets: ``minikube`` (started, images built in its Docker) and ``kubernetes``
(any cluster a kubeconfig context names, images pushed to a registry).

``up`` renders ``templates/k8s/``, applies it with server-side apply, waits for the rollouts
saying why anything is pending, and forwards local ports to the pods through the API server.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import render, state
from ..clients import kube, minikube, web
from ..clients.kube import Cluster
from ..errors import BadInput, IrisctlError, NotUp
from ..portforward import Forward
from ..settings import RECORDED_PLACE, Config
from .base import (
    Progress,
    ServiceState,
    TrainerLog,
    TrainOutcome,
    port_key,
    seed_settings,
    service_settings,
    training_busy,
)

if TYPE_CHECKING:
    from ..clients.docker import Built

NAMESPACE = "iris-mlops"
SECRET_NAME = "iris-credentials"
BUCKET = "mlflow"
# Third-party images, pinned by version tag (override with IRISCTL_*_IMAGE to pin by digest).
IMAGES = {
    "minio": "quay.io/minio/minio:RELEASE.2025-04-22T22-12-26Z",
    "prometheus": "quay.io/prometheus/prometheus:v2.53.4",
    "alertmanager": "quay.io/prometheus/alertmanager:v0.28.1",
}
# Requests and limits, sized from what the local target measured (MLflow lean: ~0.5 GiB).
RESOURCES = {
    "minio": ("100m", "256Mi", "1", "1Gi"),
    "mlflow": ("200m", "512Mi", "1", "1536Mi"),
    "api": ("200m", "768Mi", "2", "1536Mi"),  # 2 workers: ~700 MiB, ~1.1 GiB while loading
    "monitor": ("50m", "256Mi", "500m", "512Mi"),
    "trainer": ("200m", "512Mi", "1", "1Gi"),
    "prometheus": ("100m", "256Mi", "1", "1Gi"),
    "alertmanager": ("20m", "64Mi", "200m", "256Mi"),
    "job": ("50m", "128Mi", "500m", "256Mi"),
}
MANIFESTS = (
    "00-namespace",
    "10-config",
    "20-minio",
    "30-mlflow",
    "40-model-api",
    "50-monitor",
    "60-prometheus",
    "70-trainer",
)


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
    shipped = (".py", ".md")  # code, and the runbooks the model API serves
    for source in sorted(
        p for p in package.rglob("*") if p.suffix in shipped and "__pycache__" not in p.parts
    ):
        context[f"iris_services/{source.relative_to(package)}"] = source
    return context


def build_services_image(
    config: Config, target: str, base_image: str | None, on_line: Callable[[str], None]
) -> tuple[str, str, Built]:
    """Build the services image where ``target`` runs it: (tag, engine, result).

    minikube: inside its Docker (``minikube docker-env``); kubernetes: this machine's Docker,
    then pushed to ``registry``; local: this machine's Docker.
    """
    from ..clients import docker, minikube

    env = minikube.docker_env(config["minikube_profile"]) if target == "minikube" else None
    engine = docker.client(env)
    registry = config["registry"].rstrip("/") if target == "kubernetes" else ""
    tag = f"{registry + '/' if registry else ''}irisctl-services:{services_image_tag()}"
    args = {"BASE_IMAGE": base_image} if base_image else {}
    built = docker.build(engine, build_context(), tag, args, on_line)
    if registry:
        docker.push(engine, tag, on_line)
    return tag, (env or {}).get("DOCKER_HOST") or "the local Docker engine", built


# Deployments irisctl waits for and reports, in the order they are applied.
WORKLOADS = ("minio", "mlflow", "model-api", "monitor", "prometheus", "alertmanager")
# service → (pod label app.kubernetes.io/name, container port); local port from the settings.
FORWARDS = {
    "mlflow": ("mlflow", 5000),
    "model-api": ("model-api", 8080),
    "monitor": ("monitor", 8001),
    "prometheus": ("prometheus", 9090),
    "alertmanager": ("alertmanager", 9093),
}
CRONJOB = "ml-model-training"
TRAINER_SELECTOR = "app.kubernetes.io/name=trainer"
PART_OF = "app.kubernetes.io/part-of=irisctl"
# Container waiting reasons that will not fix themselves while `up` waits.
STUCK = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError"}


class KubeTarget:
    """minikube (images built in its Docker) or any cluster (images pushed to ``--registry``).

    Every call is pinned to one kubeconfig context (minikube's profile, or ``--context``),
    never the current-context, and to one namespace.
    """

    poll_s = 2.0  # how often `up` and `train` look at the cluster

    def __init__(self, config: Config, name: str, cluster: Cluster | None = None) -> None:
        self.config = config
        self.name = name
        self.home = config.home
        self.namespace = config["namespace"]
        self.profile = config["minikube_profile"]
        self._cluster = cluster  # tests pass one built on fakes of the kubernetes client

    # -- what is applied -----------------------------------------------------------------------

    def images(self) -> dict[str, str]:
        registry = self.config["registry"].rstrip("/")
        services = f"irisctl-services:{services_image_tag()}"
        if self.name == "kubernetes" and registry:
            services = f"{registry}/{services}"
        return {"services": services, **IMAGES}

    def service_env(self) -> dict[str, str]:
        """The settings ConfigMap: the same names the local target's processes get."""
        return {
            **service_settings(self.config, "http://mlflow-service:5000"),
            **seed_settings(self.config),
        }

    def allowed_hosts(self) -> list[str]:
        ns = self.namespace
        names = [
            "mlflow-service",
            f"mlflow-service.{ns}",
            f"mlflow-service.{ns}.svc",
            f"mlflow-service.{ns}.svc.cluster.local",
            "localhost",
            "127.0.0.1",
        ]
        return [h for n in names for h in (n, f"{n}:5000")]

    def render(self) -> dict[str, str]:
        """Every manifest ``up`` applies, one component per file (no Secret values)."""
        c = self.config
        context: dict[str, Any] = {
            "namespace": self.namespace,
            "secret_name": SECRET_NAME,
            "bucket": BUCKET,
            "images": self.images(),
            "storage_class": "standard" if self.name == "minikube" else "",
            "storage": {"minio": "5Gi", "mlflow": "1Gi", "prometheus": "2Gi"},
            "prometheus_retention_size": "1536MB",
            "res": {
                k: dict(
                    zip(
                        ("cpu_request", "memory_request", "cpu_limit", "memory_limit"),
                        v,
                        strict=True,
                    )
                )
                for k, v in RESOURCES.items()
            },
            "service_env": self.service_env(),
            "allowed_hosts": self.allowed_hosts(),
            "api_workers": 2,
            "schedule": c["train_schedule"],
            "prometheus_yml": render.render(
                "k8s/prometheus.yml.j2", scrape_interval=c["scrape_interval"]
            ),
            "rules_yml": render.cap_for(render.read("prometheus/alerts.yml"), c["alert_for_max"]),
            "alertmanager_yml": render.render(
                "local/alertmanager.yml.j2", webhook_url=c["alert_webhook_url"]
            ),
        }
        return {
            f"{name}.yaml": render.render(f"k8s/{name}.yaml.j2", **context) for name in MANIFESTS
        }

    def documents(self) -> list[dict[str, Any]]:
        """The rendered manifests as objects, in apply order."""
        import yaml

        return [d for text in self.render().values() for d in yaml.safe_load_all(text) if d]

    def secret_document(self, values: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": SECRET_NAME,
                "namespace": self.namespace,
                "labels": {
                    "app.kubernetes.io/part-of": "irisctl",
                    "app.kubernetes.io/managed-by": "irisctl",
                },
            },
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()},
        }

    # -- the cluster, guarded ------------------------------------------------------------------

    def context(self) -> kube.Context:
        """The context this target names, checked before anything acts on it (F3)."""
        kubeconfig = kube.kubeconfig_path(self.config["kubeconfig"])
        if self.name == "minikube":
            named = self.config["context"]
            if named and named != self.profile:
                raise BadInput(
                    f"the minikube target acts on the context of its profile ({self.profile!r}), "
                    f"not {named!r}",
                    "use --target kubernetes --context NAME for another cluster, "
                    "or IRISCTL_MINIKUBE_PROFILE for another minikube profile",
                )
            ctx = kube.resolve(kubeconfig, self.profile)
            if not minikube.is_its_server(self.profile, ctx.server):
                raise IrisctlError(
                    f"kubeconfig context {ctx.name!r} points at {ctx.server}, which is not "
                    f"minikube profile {self.profile!r}'s API server; refusing to act on it",
                    f"`minikube -p {self.profile} update-context` repairs the context",
                )
            return ctx
        return kube.resolve(kubeconfig, self.config["context"])

    def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = Cluster.connect(self.context(), self.namespace)
        return self._cluster

    # -- up ------------------------------------------------------------------------------------

    def preflight(self) -> None:
        """What must hold before anything changes (a clear error and its fix otherwise)."""
        from ..clients import docker

        if self.name == "minikube":
            minikube.binary()
            if not minikube.running(self.profile):
                self._check_resources()
        elif not self.config["registry"]:
            raise BadInput(
                "the kubernetes target needs --registry: the cluster pulls the services image "
                "from there",
                "irisctl --target kubernetes --context C --registry registry.example.com/team up",
            )
        else:
            self.context()
        docker.client()  # reachable, or a clear error

    def _check_resources(self) -> None:
        cpus, memory = self.config["minikube_cpus"], self.config["minikube_memory_mb"]
        have_cpus = os.cpu_count() or 1
        have_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        if have_cpus < cpus:
            raise IrisctlError(
                f"minikube is set to {cpus} CPUs, this machine has {have_cpus}",
                "lower IRISCTL_MINIKUBE_CPUS (minikube needs at least 2)",
            )
        if have_mb < memory:
            raise IrisctlError(
                f"minikube is set to {memory} MB of memory, this machine has {have_mb} MB",
                "lower IRISCTL_MINIKUBE_MEMORY_MB (the stack needs about 3000)",
            )

    def is_up(self) -> bool:
        recorded = state.read(self.home) or {}
        return bool(recorded.get("up")) and recorded.get("target") == self.name

    def up(self, progress: Progress) -> None:
        self.preflight()
        if self.name == "minikube":
            self._start_minikube(progress)
        cluster = self.cluster()  # the context guard runs here, before the first change
        progress("image", "building irisctl-services (skipped when the tag exists)")
        tag, engine, built = build_services_image(
            self.config, self.name, None, lambda line: progress("image", line)
        )
        progress("image", f"{tag} {'built' if built.built else 'present'} in {engine}")
        self._record(up=False)  # from here on `down` can find what was applied
        documents = self.documents()
        for doc in documents:
            if doc["kind"] == "Namespace":
                cluster.apply(doc)
                progress("namespace", doc["metadata"]["name"])
        self._ensure_secret(cluster, progress)
        for doc in documents:
            if doc["kind"] != "Namespace":
                self._apply(cluster, doc)
        progress("manifests", f"applied {len(documents)} objects (server-side, irisctl)")
        self._wait_ready(cluster, progress)
        self._record(up=True)
        self.start_forwarder()
        progress("port-forward", ", ".join(f"{s} {u}" for s, u in self.urls().items()))

    def _start_minikube(self, progress: Progress) -> None:
        if minikube.running(self.profile):
            progress("minikube", f"profile {self.profile} running")
        else:
            progress("minikube", f"starting profile {self.profile} (docker driver)")
            minikube.start(
                self.profile,
                self.config["minikube_cpus"],
                self.config["minikube_memory_mb"],
                lambda line: progress("minikube", line),
            )
        minikube.enable_addons(self.profile, lambda line: progress("minikube", line))

    def _ensure_secret(self, cluster: Cluster, progress: Progress) -> None:
        """Generate the credentials once; later `up`s keep them (read first, create if absent)."""
        existing = cluster.secret(SECRET_NAME)
        wanted_uri = self.config["backend_store_uri"]
        if existing is None:
            values = {
                "minio-root-user": f"iris-{secrets.token_hex(4)}",
                "minio-root-password": secrets.token_urlsafe(32),
                "mlflow-backend-store-uri": wanted_uri or DEFAULT_BACKEND_URI,
            }
            cluster.apply(self.secret_document(values))
            progress("secret", f"generated {SECRET_NAME} (see `irisctl status --show-secrets`)")
        elif wanted_uri and existing.get("mlflow-backend-store-uri") != wanted_uri:
            cluster.apply(
                self.secret_document({**existing, "mlflow-backend-store-uri": wanted_uri})
            )
            progress("secret", f"{SECRET_NAME}: new MLflow backend store URI")
        else:
            progress("secret", f"{SECRET_NAME} kept")

    def _apply(self, cluster: Cluster, doc: dict[str, Any]) -> None:
        if doc["kind"] == "Job":  # a Job's pod template is immutable: finished ones stay
            name = doc["metadata"]["name"]
            current = cluster.get("batch/v1", "Job", name)
            if current is not None:
                if (current.get("status") or {}).get("succeeded"):
                    return
                cluster.delete("batch/v1", "Job", name)
        cluster.apply(doc)

    def _wait_ready(self, cluster: Cluster, progress: Progress) -> None:
        """Until every Deployment is rolled out and the bucket Job has succeeded, saying why not."""
        deadline = time.monotonic() + self.config["rollout_timeout"]
        said: dict[str, str] = {}
        while True:
            pending = self._pending(cluster)
            for name in (*WORKLOADS, "minio-create-bucket"):
                now = pending.get(name, "healthy")
                if said.get(name) != now:
                    progress(name, now)
                    said[name] = now
            if not pending:
                return
            stuck = {n: why for n, why in pending.items() if _reason(why) in STUCK}
            if stuck or time.monotonic() > deadline:
                shown = stuck or pending
                raise IrisctlError(
                    "not ready"
                    + ("" if stuck else f" after {self.config['rollout_timeout']:.0f}s")
                    + ": "
                    + "; ".join(f"{n}: {why}" for n, why in shown.items()),
                    f"`irisctl logs {next(iter(shown))}`; what was applied stays, "
                    "`irisctl up` again continues",
                )
            time.sleep(self.poll_s)

    def _pending(self, cluster: Cluster) -> dict[str, str]:
        """Workload → why it is not ready yet (absent: ready)."""
        deployments = {d["metadata"]["name"]: d for d in cluster.find("apps/v1", "Deployment")}
        pods = cluster.find("v1", "Pod", PART_OF)
        pending = {}
        for name in WORKLOADS:
            d = deployments.get(name)
            if d is None:
                pending[name] = "not created yet"
            elif not _rolled_out(d):
                pending[name] = self._why(cluster, name, pods)
        job = cluster.get("batch/v1", "Job", "minio-create-bucket")
        status = (job or {}).get("status") or {}
        if job is not None and not status.get("succeeded"):
            pending["minio-create-bucket"] = self._why(cluster, "minio-create-bucket", pods)
        return pending

    def _why(self, cluster: Cluster, component: str, pods: list[dict[str, Any]]) -> str:
        """The most telling reason a component's pods are not ready, with log lines on crashes."""
        mine = [p for p in pods if _label(p, "app.kubernetes.io/name") == component]
        for pod in mine:
            name = pod["metadata"]["name"]
            status = pod.get("status") or {}
            for cs in status.get("containerStatuses") or []:
                waiting = (cs.get("state") or {}).get("waiting") or {}
                reason = waiting.get("reason")
                if reason == "CrashLoopBackOff":
                    last = [ln for ln in cluster.pod_log(name, tail=3, previous=True) if ln]
                    return (
                        f"CrashLoopBackOff (restarts {cs.get('restartCount', 0)}), last log: "
                        + (" | ".join(last)[-300:] or "empty")
                    )
                if reason and reason != "ContainerCreating":
                    return f"{reason}: {waiting.get('message', '')}".strip(": ")[:300]
            for cond in status.get("conditions") or []:
                if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                    return f"{cond.get('reason', 'Unschedulable')}: {cond.get('message', '')}"[:300]
        if not mine:
            return "waiting for its pod"
        phase = (mine[0].get("status") or {}).get("phase", "Pending")
        return "starting" if phase == "Running" else phase.lower()

    def _record(self, up: bool, **extra: Any) -> None:
        c = self.config
        previous = state.read(self.home) or {}
        state.write(
            self.home,
            {
                "target": self.name,
                "up": up,
                "ports": c.ports,
                "place": {k: c[k] for k in RECORDED_PLACE},
                "forwarder_pid": previous.get("forwarder_pid"),
                "started_at": previous.get("started_at") or time.time(),
                **extra,
            },
        )

    # -- reaching the services -----------------------------------------------------------------

    def _local_port(self, service: str) -> int:
        if service not in FORWARDS:
            raise BadInput(f"{service} has no HTTP endpoint")
        port: int = self.config.ports[port_key(service)]
        return port

    def urls(self) -> dict[str, str]:
        return {s: f"http://127.0.0.1:{self._local_port(s)}" for s in FORWARDS}

    def endpoint(self, service: str) -> str:
        """A local URL, forwarded to the service's pod (the forwarder is started on demand)."""
        url = f"http://127.0.0.1:{self._local_port(service)}"
        if not self._forwarder_alive():
            self.start_forwarder()
        return url

    def opener(self, service: str) -> Callable[[], Any]:
        """For the forwarder: a new stream to a ready pod of ``service`` per connection."""
        component, port = FORWARDS[service]

        def open_remote() -> Any:
            cluster = self.cluster()
            pods = cluster.find("v1", "Pod", f"app.kubernetes.io/name={component}")
            ready = sorted(
                (p for p in pods if _pod_ready(p)),
                key=lambda p: p["metadata"].get("creationTimestamp", ""),
            )
            if not ready:
                raise IrisctlError(f"no ready pod of {service}")
            return cluster.open_port(ready[-1]["metadata"]["name"], port)

        return open_remote

    def forward(self, on_error: Callable[[str], None]) -> list[Forward]:
        """Start forwarding every service's local port (``irisctl port-forward``)."""
        self.cluster()  # the context guard, before listening
        forwards = []
        try:
            for service in FORWARDS:
                forwards.append(
                    Forward(self._local_port(service), self.opener(service), on_error).start()
                )
        except OSError as exc:
            for f in forwards:
                f.stop()
            raise IrisctlError(
                f"cannot listen on 127.0.0.1 for {service}: {exc.strerror}",
                "another process holds that port; pick another with "
                f"IRISCTL_{port_key(service).upper()}_PORT",
            ) from None
        return forwards

    def _forwarder_pid(self) -> int | None:
        pid = (state.read(self.home) or {}).get("forwarder_pid")
        if not isinstance(pid, int):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            try:
                os.kill(pid, 0)
            except OSError:
                return None
            return pid  # no /proc (macOS): trust the recorded pid
        return pid if b"port-forward" in cmdline else None  # a recycled pid is not ours

    def _forwarder_alive(self) -> bool:
        return self._forwarder_pid() is not None and all(
            web.port_open(self._local_port(s)) for s in FORWARDS
        )

    def start_forwarder(self) -> None:
        """A background ``irisctl port-forward`` for this stack; its pid goes in the state file."""
        self.stop_forwarder()
        busy = [p for p in (self._local_port(s) for s in FORWARDS) if web.port_open(p)]
        if busy:
            raise IrisctlError(
                f"local ports {busy} are held by another process, so the services cannot be "
                "forwarded there",
                "pick others with IRISCTL_MLFLOW_PORT, IRISCTL_API_PORT, … or free them",
            )
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "IRISCTL_HOME": str(self.home),
            "IRISCTL_TARGET": self.name,
            **{f"IRISCTL_{k.upper()}": str(self.config[k]) for k in RECORDED_PLACE},
            **{f"IRISCTL_{k.upper()}_PORT": str(v) for k, v in self.config.ports.items()},
        }
        with (logs / "port-forward.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "irisctl", "port-forward"],
                env={k: v for k, v in env.items() if v},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        state.write(self.home, {**(state.read(self.home) or {}), "forwarder_pid": proc.pid})
        deadline = time.monotonic() + 20
        while not all(web.port_open(self._local_port(s)) for s in FORWARDS):
            if proc.poll() is not None or time.monotonic() > deadline:
                lines = (logs / "port-forward.log").read_text(errors="replace").splitlines()
                said = [ln for ln in lines if ln.startswith(("Error:", "Hint:"))][-2:]
                raise IrisctlError(
                    "the port-forward did not start: "
                    + (" ".join(said or lines[-3:]) or "no output"),
                    f"see {logs / 'port-forward.log'}",
                )
            time.sleep(0.2)

    def stop_forwarder(self) -> bool:
        pid = self._forwarder_pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)  # its own session: pgid == pid
        return True

    # -- reporting -----------------------------------------------------------------------------

    def services(self) -> list[ServiceState]:
        cluster = self.cluster()
        deployments = {d["metadata"]["name"]: d for d in cluster.find("apps/v1", "Deployment")}
        pods = cluster.find("v1", "Pod", PART_OF)
        forwarded = self._forwarder_alive()
        out = []
        for name in WORKLOADS:
            d = deployments.get(name)
            url = f"http://127.0.0.1:{self._local_port(name)}" if name in FORWARDS else None
            if d is None:
                out.append(ServiceState(name, "absent", None, detail="no Deployment"))
                continue
            mine = [p for p in pods if _label(p, "app.kubernetes.io/name") == name]
            restarts = sum(
                cs.get("restartCount", 0)
                for p in mine
                for cs in (p.get("status") or {}).get("containerStatuses") or []
            )
            status = d.get("status") or {}
            ready = status.get("readyReplicas") or 0
            wanted = (d.get("spec") or {}).get("replicas", 1)
            detail = f"{ready}/{wanted} ready, {restarts} restarts"
            if _rolled_out(d):
                condition = "running"
            else:
                why = self._why(cluster, name, pods)
                condition = (
                    "backoff" if _reason(why) in (*STUCK, "CrashLoopBackOff") else "starting"
                )
                detail += f"; {why}"
            out.append(
                ServiceState(name, condition, url if forwarded else None, None, None, detail)
            )
        out.append(self._trainer_state(cluster))
        return out

    def _trainer_state(self, cluster: Cluster) -> ServiceState:
        cron = cluster.get("batch/v1", "CronJob", CRONJOB)
        if cron is None:
            return ServiceState("trainer", "absent", None, detail=f"no CronJob {CRONJOB}")
        cs = cron.get("status") or {}
        jobs = _newest_first(cluster.find("batch/v1", "Job", TRAINER_SELECTOR))
        detail = (
            f"schedule {cron['spec']['schedule']}; last scheduled "
            f"{cs.get('lastScheduleTime') or 'never'}, last success "
            f"{cs.get('lastSuccessfulTime') or 'never'}"
        )
        if not jobs:
            return ServiceState("trainer", "stopped", None, detail=detail)
        last = jobs[0]
        if _job_active(last):
            return ServiceState("trainer", "running", None, detail=f"{detail}; job {_name(last)}")
        outcome = "succeeded" if (last.get("status") or {}).get("succeeded") else "failed"
        return ServiceState(
            "trainer", "exited", None, detail=f"{detail}; job {_name(last)} {outcome}"
        )

    def secrets(self) -> dict[str, str]:
        found = self.cluster().secret(SECRET_NAME)
        if found is None:
            raise NotUp(f"no Secret {SECRET_NAME} in namespace {self.namespace}")
        return found

    # -- training and logs ---------------------------------------------------------------------

    def train(self, on_line: Callable[[str], None], attach: bool = False) -> TrainOutcome:
        """A Job from the CronJob's template (``kubectl create job --from=``), followed to its end.

        ``concurrencyPolicy: Forbid`` covers only the CronJob's own Jobs, so any active training
        Job, scheduled or manual, makes this refuse (or, with ``attach``, follow it).
        """
        cluster = self.cluster()
        active = [j for j in cluster.find("batch/v1", "Job", TRAINER_SELECTOR) if _job_active(j)]
        if active and not attach:
            raise training_busy(f"job {_name(active[0])}")
        job = _name(active[0]) if active else self._create_job(cluster)
        pod = self._wait_pod(cluster, job, on_line)
        said = TrainerLog()
        for line in cluster.follow_log(pod):
            said.read(line)
            on_line(line)
        finished = self._wait_job(cluster, job)
        status = finished.get("status") or {}
        if status.get("succeeded"):
            return TrainOutcome(0, said.summary, None)
        code = self._exit_code(cluster, job)
        reason = next(
            (
                c.get("message") or c.get("reason")
                for c in status.get("conditions") or []
                if c.get("type") == "Failed"
            ),
            None,
        )
        return TrainOutcome(code or 1, said.summary, said.error or reason or f"job {job} failed")

    def cancel_training(self) -> list[str]:
        """Delete every active training Job, its pods first (Foreground), so none finishes."""
        cluster = self.cluster()
        return [
            f"deleted job {_name(job)}"
            for job in cluster.find("batch/v1", "Job", TRAINER_SELECTOR)
            if _job_active(job) and cluster.delete("batch/v1", "Job", _name(job), "Foreground")
        ]

    def _create_job(self, cluster: Cluster) -> str:
        cron = cluster.get("batch/v1", "CronJob", CRONJOB)
        if cron is None:
            raise NotUp(f"no CronJob {CRONJOB} in namespace {self.namespace}")
        template = cron["spec"]["jobTemplate"]
        name = f"{CRONJOB}-manual-{int(time.time())}"
        cluster.create(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {
                    "name": name,
                    "namespace": self.namespace,
                    "labels": (template.get("metadata") or {}).get("labels") or {},
                    "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
                    "ownerReferences": [
                        {
                            "apiVersion": "batch/v1",
                            "kind": "CronJob",
                            "name": CRONJOB,
                            "uid": cron["metadata"]["uid"],
                        }
                    ],
                },
                "spec": template["spec"],
            }
        )
        return name

    def _job_pods(self, cluster: Cluster, job: str) -> list[dict[str, Any]]:
        return _newest_first(cluster.find("v1", "Pod", f"job-name={job}"))

    def _wait_pod(self, cluster: Cluster, job: str, on_line: Callable[[str], None]) -> str:
        """The job's pod, once its container has started (or ended), saying why it waits."""
        deadline = time.monotonic() + self.config["rollout_timeout"]
        said = ""
        while True:
            pods = self._job_pods(cluster, job)
            if pods:
                pod = pods[0]
                statuses = (pod.get("status") or {}).get("containerStatuses") or []
                if any(
                    "running" in (cs.get("state") or {}) or "terminated" in (cs.get("state") or {})
                    for cs in statuses
                ):
                    return str(pod["metadata"]["name"])
                why = self._why(cluster, "trainer", pods)
                if _reason(why) in STUCK:
                    raise IrisctlError(f"the training pod cannot start: {why}")
            else:
                why = "waiting for its pod"
            if why != said:
                on_line(f"job {job}: {why}")
                said = why
            if time.monotonic() > deadline:
                raise IrisctlError(f"the training pod did not start: {why}")
            time.sleep(self.poll_s)

    def _wait_job(self, cluster: Cluster, job: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.config["rollout_timeout"] + 900
        while True:
            found = cluster.get("batch/v1", "Job", job)
            if found is None:  # deleted meanwhile (by hand, or its TTL): it will not finish
                return {
                    "status": {
                        "conditions": [
                            {
                                "type": "Failed",
                                "status": "True",
                                "message": f"job {job} was deleted",
                            }
                        ]
                    }
                }
            if not _job_active(found) or time.monotonic() > deadline:
                return found
            time.sleep(self.poll_s)

    def _exit_code(self, cluster: Cluster, job: str) -> int | None:
        for pod in self._job_pods(cluster, job):
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                ended = (cs.get("state") or {}).get("terminated")
                if ended:
                    return int(ended.get("exitCode", 1))
        return None

    def logs(self, service: str, follow: bool, tail: int | None) -> Iterator[str]:
        """The newest pod's log (``trainer``: the newest training Job's), secrets redacted."""
        if service == "scheduler":
            raise BadInput(
                f"on the {self.name} target the CronJob {CRONJOB} schedules training",
                "`irisctl status` shows its last schedule; `irisctl logs trainer` the last run",
            )
        cluster = self.cluster()
        if service == "trainer":
            jobs = _newest_first(cluster.find("batch/v1", "Job", TRAINER_SELECTOR))
            if not jobs:
                raise IrisctlError("no training has run yet", "irisctl train --now")
            pods = self._job_pods(cluster, _name(jobs[0]))
        else:
            pods = _newest_first(cluster.find("v1", "Pod", f"app.kubernetes.io/name={service}"))
        if not pods:
            raise IrisctlError(f"no pod of {service} in namespace {self.namespace}", "irisctl up")
        pod = _name(pods[0])
        hidden = [v for v in (cluster.secret(SECRET_NAME) or {}).values() if len(v) >= 4]
        lines = cluster.follow_log(pod, tail) if follow else iter(cluster.pod_log(pod, tail))
        for line in lines:
            for value in hidden:
                line = line.replace(value, "[redacted]")
            yield line

    # -- down ----------------------------------------------------------------------------------

    def down(self, purge: bool, dry_run: bool = False, cluster: bool = False) -> list[str]:
        """Delete the workloads (keep PVCs and the Secret); ``purge``: the whole namespace."""
        if cluster and self.name != "minikube":
            raise BadInput("--cluster stops minikube; the kubernetes target's cluster is not ours")
        kube_ = self.cluster()
        if purge:
            doomed = [("v1", "Namespace", self.namespace)]
        else:
            kept = {"Namespace", "PersistentVolumeClaim", "Secret"}
            doomed = [
                (d["apiVersion"], d["kind"], d["metadata"]["name"])
                for d in reversed(self.documents())
                if d["kind"] not in kept
            ]
            doomed += [
                ("batch/v1", "Job", _name(j))
                for j in kube_.find("batch/v1", "Job", TRAINER_SELECTOR)
            ]
        prefix = "would delete" if dry_run else "deleted"
        done = []
        for api_version, kind, name in doomed:
            if dry_run:
                present = kube_.get(api_version, kind, name) is not None
            else:
                present = kube_.delete(api_version, kind, name)
            if present:
                done.append(f"{prefix} {kind}/{name}")
        if not purge and done:
            done.append(
                f"kept the PersistentVolumeClaims and Secret {SECRET_NAME} "
                "(runs, models, metrics, credentials); `down --purge` deletes them"
            )
        if cluster:
            done.append(f"{'would stop' if dry_run else 'stopped'} minikube profile {self.profile}")
        if dry_run:
            return done
        if self.stop_forwarder():
            done.append("stopped the port-forward")
        if cluster:
            minikube.stop(self.profile)
        if purge:
            state.remove(self.home)
        else:
            self._record(up=False, forwarder_pid=None)
        return done


DEFAULT_BACKEND_URI = "sqlite:////data/mlflow.db"  # on the mlflow-data PVC


def _reason(why: str) -> str:
    """The Kubernetes reason a ``_why`` message starts with (``CrashLoopBackOff``, …)."""
    return why.split(":")[0].split(" ")[0]


def _name(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def _label(obj: dict[str, Any], key: str) -> str | None:
    labels: dict[str, str] = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(key)


def _newest_first(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(objs, key=lambda o: o["metadata"].get("creationTimestamp") or "", reverse=True)


def _rolled_out(d: dict[str, Any]) -> bool:
    """Like `kubectl rollout status`: the newest generation observed, updated, ready, available."""
    spec, status = d.get("spec") or {}, d.get("status") or {}
    wanted = spec.get("replicas", 1)
    return (
        status.get("observedGeneration", 0) >= d["metadata"].get("generation", 1)
        and (status.get("updatedReplicas") or 0) >= wanted
        and (status.get("readyReplicas") or 0) >= wanted
        and (status.get("availableReplicas") or 0) >= wanted
    )


def _pod_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def _job_active(job: dict[str, Any]) -> bool:
    """True until the Job has a Complete or Failed condition."""
    status = job.get("status") or {}
    return not any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
