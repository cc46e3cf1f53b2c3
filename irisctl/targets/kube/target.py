"""The Kubernetes target itself: ``up``, reporting, training, logs and ``down``, composed from
the modules beside it (manifests, images, rollout, jobs, forwarding, teardown)."""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

from ... import images, state
from ...clients import kube, minikube
from ...clients.kube import Cluster
from ...errors import BadInput, IrisctlError, NotUp
from ...portforward import Forward
from ...settings import RECORDED_PLACE, Config
from ..base import Check, Progress, ServiceState, TrainOutcome
from . import jobs, manifests, rollout, teardown
from .forwarding import FORWARDS, Forwarder
from .manifests import DEFAULT_BACKEND_URI, SECRET_NAME
from .objects import PART_OF, label, name, newest_first
from .rollout import STUCK, WORKLOADS


class KubeTarget:
    """minikube (images built in its Docker) or any cluster (images pushed to ``--registry``).

    Every call is pinned to one kubeconfig context (minikube's profile, or ``--context``),
    never the current-context, and to one namespace.
    """

    poll_s = 2.0  # how often `up` and `train` look at the cluster

    def __init__(self, config: Config, name: str) -> None:
        self.config = config
        self.name = name
        self.home = config.home
        self.namespace = config["namespace"]
        self.profile = config["minikube_profile"]
        self._cluster: Cluster | None = None  # connected on first use, after the guard
        self.forwarder = Forwarder(config, name, self.cluster, self._kubeconfig_server)

    # -- what is applied -----------------------------------------------------------------------

    def checks(self) -> list[Check]:
        if self.name != "minikube":
            return []
        from .checks import docker_memory_check, network_policy_check

        found = [network_policy_check(self.config["minikube_profile"])]
        if shutil.which("docker") or os.environ.get("DOCKER_HOST"):
            most = manifests.api_pods_at_most(self.config)
            found.append(docker_memory_check(self.config["minikube_memory_mb"], most))
        return found

    def render(self) -> dict[str, str]:
        """Every manifest ``up`` applies, one component per file (no Secret values)."""
        return manifests.render(self.config, self.name)

    def documents(self) -> list[dict[str, Any]]:
        """The rendered manifests as objects, in apply order."""
        return manifests.documents(self.render())

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

    def _kubeconfig_server(self) -> str:
        """The API server the kubeconfig names for this target now: a file read, no guard (the
        forwarder checks it on every command; the guard runs where the cluster is reached)."""
        context = self.profile if self.name == "minikube" else self.config["context"]
        return kube.resolve(kube.kubeconfig_path(self.config["kubeconfig"]), context).server

    def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = Cluster.connect(self.context(), self.namespace)
        return self._cluster

    # -- up ------------------------------------------------------------------------------------

    def preflight(self) -> None:
        """What must hold before anything changes (a clear error and its fix otherwise)."""
        from ...clients import docker

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
            docker.client()  # this machine's Docker builds and pushes: reachable, or clear
        # minikube: no ping of this machine's Docker here. `minikube start` reports a stopped
        # Docker as PROVIDER_DOCKER_NOT_RUNNING (mapped to its fix); images go to its own.

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
        self._check_storage(cluster, self.documents())
        self._check_autoscaling(cluster)
        adopted = self._check_namespace(cluster)
        progress("image", "building irisctl-services and -model-api (skipped when tags exist)")
        tag, engine, built = images.build_services_image(
            self.config, self.name, None, lambda line: progress("image", line)
        )
        progress("image", f"{tag} {'built' if built.built else 'present'} in {engine}")
        self._record(up=False)  # from here on `down` can find what was applied
        documents = self.documents()
        if teardown.terminating(cluster.get("v1", "Namespace", self.namespace)):
            progress(
                "namespace",
                f"{self.namespace} is still being deleted (Terminating, e.g. after "
                "`down --purge`); waiting until it is gone",
            )
            teardown.wait_gone(cluster, self.config["rollout_timeout"], self.poll_s, progress)
        for doc in documents:
            if doc["kind"] == "Namespace" and not adopted:
                cluster.apply(doc)
                progress("namespace", doc["metadata"]["name"])
        if adopted:
            progress(
                "namespace",
                f"{self.namespace} adopted: left as it is; `down --purge` will not delete it",
            )
        self._ensure_secret(cluster, progress)
        # First what the settings no longer render: an autoscaler left running would undo the
        # count applied below.
        for line in teardown.retire(cluster, documents):
            progress("manifests", line)
        found = {name(d): d for d in cluster.find("apps/v1", "Deployment")}
        before = manifests.pod_checksums(list(found.values()))
        for doc in documents:
            if doc["kind"] != "Namespace":
                self._apply(
                    cluster, doc, found.get(name(doc)) if doc["kind"] == "Deployment" else None
                )
        progress("manifests", f"applied {len(documents)} objects (server-side, irisctl)")
        after = manifests.pod_checksums(documents)
        rolled = [n for n, c in after.items() if before.get(n) not in (None, c)]
        if rolled:
            progress("settings", f"changed: restarting {', '.join(rolled)} to read them")
        # Up once applied: after a failed or interrupted wait, `train --now`, `status` and
        # `down` still act on it (and `up` again continues).
        self._record(up=True)
        rollout.wait_ready(cluster, progress, self.config["rollout_timeout"], self.poll_s)
        self.start_forwarder()
        progress("port-forward", ", ".join(f"{s} {u}" for s, u in self.urls().items()))

    def _check_namespace(self, cluster: Cluster) -> bool:
        """True when ``up`` goes into a namespace someone else created (``--adopt``); refuse
        one without ``--adopt``, before anything changes."""
        found = cluster.get("v1", "Namespace", self.namespace)
        if found is None or teardown.terminating(found) or teardown.managed(found):
            return False
        ours = cluster.get("v1", "Secret", SECRET_NAME)
        if not self.config["adopt"] and not (ours and teardown.managed(ours)):
            # (irisctl's own Secret there: adopted by an earlier `up --adopt`, from any machine)
            raise BadInput(
                f"namespace {self.namespace} exists and was not created by irisctl (no label "
                "app.kubernetes.io/managed-by=irisctl); refusing to deploy into it",
                "choose another namespace with --namespace, or pass `up --adopt` to use it as "
                "it is (irisctl then never relabels or deletes it)",
            )
        return True

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
        addons = [a.strip() for a in self.config["minikube_addons"].split(",") if a.strip()]
        if self.config["api_autoscale"] and "metrics-server" not in addons:
            addons.append("metrics-server")  # the autoscaler's CPU readings
        minikube.enable_addons(self.profile, addons, lambda line: progress("minikube", line))

    def _ensure_secret(self, cluster: Cluster, progress: Progress) -> None:
        """Generate the credentials and the trainer's signing key once; later `up`s keep them
        (read first, create if absent; a Secret from an older irisctl gains what it lacks:
        MLflow's own MinIO user, the signing key). The alert webhook URL, a credential, is kept
        here too, never in a ConfigMap."""
        from iris_services.common import signing

        existing = cluster.secret(SECRET_NAME)
        wanted_uri = self.config["backend_store_uri"]
        # MLflow's own MinIO user (limited to its bucket by the setup Job), never the root keys.
        mlflow_user = {
            "minio-mlflow-user": f"mlflow-{secrets.token_hex(4)}",
            "minio-mlflow-password": secrets.token_urlsafe(32),
        }
        webhook = self.config["alert_webhook_url"]
        if existing is None:
            values = {
                "minio-root-user": f"iris-{secrets.token_hex(4)}",
                "minio-root-password": secrets.token_urlsafe(32),
                **mlflow_user,
                "mlflow-backend-store-uri": wanted_uri or DEFAULT_BACKEND_URI,
                signing.SECRET_KEY: signing.new_key(),
            }
            if webhook:
                values[manifests.WEBHOOK_KEY] = webhook
            cluster.apply(manifests.secret_document(self.namespace, values))
            progress("secret", f"generated {SECRET_NAME} (see `irisctl status --show-secrets`)")
            return
        updated = dict(existing)
        changes = []
        if not set(mlflow_user) <= set(existing):  # a Secret from before MLflow's own user
            updated.update(mlflow_user)
            changes.append("added MLflow's own MinIO user")
        if wanted_uri and existing.get("mlflow-backend-store-uri") != wanted_uri:
            updated["mlflow-backend-store-uri"] = wanted_uri
            changes.append("new MLflow backend store URI")
        if not existing.get(signing.SECRET_KEY):
            updated[signing.SECRET_KEY] = signing.new_key()
            changes.append(
                "generated the signing key (`irisctl train --now` makes a signed champion)"
            )
        # The alert webhook URL follows the setting: stored when set, removed when unset.
        if webhook and existing.get(manifests.WEBHOOK_KEY) != webhook:
            updated[manifests.WEBHOOK_KEY] = webhook
            changes.append("alert webhook URL stored")
        elif not webhook and manifests.WEBHOOK_KEY in existing:
            del updated[manifests.WEBHOOK_KEY]
            changes.append("alert webhook URL removed")
        if changes:
            cluster.apply(manifests.secret_document(self.namespace, updated))
            progress("secret", f"{SECRET_NAME}: {'; '.join(changes)}")
        else:
            progress("secret", f"{SECRET_NAME} kept")

    def _check_storage(self, cluster: Cluster, documents: list[dict[str, Any]]) -> None:
        """The PVCs name no class, so they get the cluster's default: without one, a new claim
        would stay Pending and `up` would wait out its timeout. Say so before any change."""
        claims = [name(d) for d in documents if d["kind"] == "PersistentVolumeClaim"]
        if all(cluster.get("v1", "PersistentVolumeClaim", c) for c in claims):
            return  # they exist already (bound, or their own problem)
        try:
            classes = cluster.find("storage.k8s.io/v1", "StorageClass")
        except IrisctlError:
            return  # not allowed to list StorageClasses (RBAC): the claims will tell
        default = "storageclass.kubernetes.io/is-default-class"
        if any((c["metadata"].get("annotations") or {}).get(default) == "true" for c in classes):
            return
        profile = self.config["minikube_profile"]
        raise IrisctlError(
            "the cluster has no default StorageClass, so the volumes of MinIO, MLflow and "
            "Prometheus would stay Pending",
            f"minikube: `minikube -p {profile} addons enable default-storageclass` (and "
            "`storage-provisioner`); another cluster: mark a class default with `kubectl patch "
            'storageclass NAME -p \'{"metadata": {"annotations": {"' + default + '": "true"}}}\'`',
        )

    def _check_autoscaling(self, cluster: Cluster) -> None:
        """``api_autoscale`` needs metrics-server (``metrics.k8s.io``): without it the
        autoscaler never reads a CPU figure and the model API never scales. minikube enables the
        addon in ``up`` (its API comes a minute later, so it is not checked there)."""
        if not self.config["api_autoscale"] or self.name == "minikube":
            return
        if not cluster.serves("metrics.k8s.io/v1beta1"):
            raise IrisctlError(
                "api_autoscale needs metrics-server, and this cluster does not serve the metrics "
                "API (metrics.k8s.io)",
                "install metrics-server (https://github.com/kubernetes-sigs/metrics-server), or "
                "use a fixed count: unset api_autoscale and set api_replicas",
            )

    def _apply(
        self, cluster: Cluster, doc: dict[str, Any], deployed: dict[str, Any] | None = None
    ) -> None:
        """Server-side apply ``doc``; ``deployed``: the Deployment of that name as found."""
        if doc["kind"] == "Job":  # a Job's pod template is immutable: finished ones stay
            job = doc["metadata"]["name"]
            spec = manifests.spec_digest(doc)
            doc["metadata"].setdefault("annotations", {})[manifests.SPEC_DIGEST] = spec
            current = cluster.get("batch/v1", "Job", job)
            if current is not None:
                ran = (current["metadata"].get("annotations") or {}).get(manifests.SPEC_DIGEST)
                if (current.get("status") or {}).get("succeeded") and ran == spec:
                    return
                # Unfinished, or done with another spec (e.g. before the MinIO user): run again.
                cluster.delete("batch/v1", "Job", job)
        wanted = (doc.get("spec") or {}).get("replicas")
        # After an autoscaler, its controller owns the count: taken back by an update (an apply
        # of another count would be a field-manager conflict, and we never force).
        if deployed is not None and wanted not in (None, deployed["spec"].get("replicas")):
            cluster.merge_patch("apps/v1", "Deployment", name(doc), {"spec": {"replicas": wanted}})
        cluster.apply(doc)

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
                "forwarder_server": previous.get("forwarder_server"),
                "started_at": previous.get("started_at") or time.time(),
                **extra,
            },
        )

    # -- reaching the services -----------------------------------------------------------------

    def urls(self) -> dict[str, str]:
        return self.forwarder.urls()

    def endpoint(self, service: str) -> str:
        """A local URL, forwarded to the service's pod (the forwarder is started on demand)."""
        url = f"http://127.0.0.1:{self.forwarder.local_port(service)}"
        if not self.forwarder.alive():
            self.start_forwarder()
        return url

    def opener(self, service: str) -> Callable[[], Any]:
        """For the forwarder: a new stream to a ready pod of ``service`` per connection."""
        return self.forwarder.opener(service)

    def forward(self, on_error: Callable[[str], None]) -> list[Forward]:
        """Start forwarding every service's local port (``irisctl port-forward``)."""
        return self.forwarder.forward(on_error)

    def start_forwarder(self) -> None:
        """A background ``irisctl port-forward`` for this stack; its pid goes in the state file."""
        self.forwarder.start()

    def stop_forwarder(self) -> bool:
        return self.forwarder.stop()

    # -- reporting -----------------------------------------------------------------------------

    def services(self) -> list[ServiceState]:
        cluster = self.cluster()
        deployments = {d["metadata"]["name"]: d for d in cluster.find("apps/v1", "Deployment")}
        pods = cluster.find("v1", "Pod", PART_OF)
        forwarded = self.forwarder.alive()
        out = []
        for workload in WORKLOADS:
            d = deployments.get(workload)
            url = self.forwarder.urls().get(workload)
            if d is None:
                out.append(ServiceState(workload, "absent", None, detail="no Deployment"))
                continue
            mine = [p for p in pods if label(p, "app.kubernetes.io/name") == workload]
            restarts = sum(
                cs.get("restartCount", 0)
                for p in mine
                for cs in (p.get("status") or {}).get("containerStatuses") or []
            )
            status = d.get("status") or {}
            ready = status.get("readyReplicas") or 0
            wanted = (d.get("spec") or {}).get("replicas", 1)
            detail = f"{ready}/{wanted} ready, {restarts} restarts"
            if rollout.rolled_out(d):
                condition = "running"
            else:
                why = rollout.why(cluster, workload, pods)
                condition = (
                    "backoff" if rollout.reason(why) in (*STUCK, "CrashLoopBackOff") else "starting"
                )
                detail += f"; {why}"
            out.append(
                ServiceState(workload, condition, url if forwarded else None, None, None, detail)
            )
        out.append(jobs.trainer_state(cluster))
        return out

    def secrets(self) -> dict[str, str]:
        found = self.cluster().secret(SECRET_NAME)
        if found is None:
            raise NotUp(f"no Secret {SECRET_NAME} in namespace {self.namespace}")
        return found

    # -- training and logs ---------------------------------------------------------------------

    def train(self, on_line: Callable[[str], None], attach: bool = False) -> TrainOutcome:
        """A Job from the CronJob's template (``kubectl create job --from=``), followed to its end.

        Any active training Job, scheduled or manual, makes this refuse (or, with ``attach``,
        follow it).
        """
        return jobs.train(
            self.cluster(), on_line, attach, self.config["rollout_timeout"], self.poll_s
        )

    def cancel_training(self) -> list[str]:
        """Delete every active training Job, its pods first, so none finishes."""
        return jobs.cancel(self.cluster())

    def logs(self, service: str, follow: bool, tail: int | None) -> Iterator[str]:
        """The newest pod's log (``trainer``: the newest training Job's), secrets redacted."""
        if service == "scheduler":
            raise BadInput(
                f"on the {self.name} target the CronJob {jobs.CRONJOB} schedules training",
                "`irisctl status` shows its last schedule; `irisctl logs trainer` the last run",
            )
        cluster = self.cluster()
        if service == "trainer":
            found = newest_first(cluster.find("batch/v1", "Job", jobs.TRAINER_SELECTOR))
            if not found:
                raise IrisctlError("no training has run yet", "irisctl train --now")
            pods = jobs.job_pods(cluster, name(found[0]))
        else:
            pods = newest_first(cluster.find("v1", "Pod", f"app.kubernetes.io/name={service}"))
        if not pods:
            raise IrisctlError(f"no pod of {service} in namespace {self.namespace}", "irisctl up")
        pod = name(pods[0])
        hidden = [v for v in (cluster.secret(SECRET_NAME) or {}).values() if len(v) >= 4]
        lines = cluster.follow_log(pod, tail) if follow else iter(cluster.pod_log(pod, tail))
        for line in lines:
            for value in hidden:
                line = line.replace(value, "[redacted]")
            yield line

    # -- down ----------------------------------------------------------------------------------

    def purge_scope(self) -> str:
        """What ``down --purge`` deletes, for its confirmation."""
        where = f"context {self.config['context'] or self.profile}"
        return f"namespace {self.namespace} in {where} (every model, run and metric in it)"

    def down(
        self,
        purge: bool,
        dry_run: bool = False,
        cluster: bool = False,
        progress: Progress | None = None,
    ) -> list[str]:
        """Delete the workloads (keep PVCs and the Secret); ``purge``: the whole namespace."""
        if cluster and self.name != "minikube":
            raise BadInput("--cluster stops minikube; the kubernetes target's cluster is not ours")
        kube_ = self.cluster()
        if purge:  # both targets: a namespace adopted with `up --adopt` is never deleted
            teardown.check_managed(kube_, self.config["context"])
        done = teardown.delete(kube_, self.documents(), purge, dry_run)
        if purge and not dry_run and done:
            waited = teardown.wait_gone(
                kube_, self.config["rollout_timeout"], self.poll_s, progress
            )
            done.append(f"namespace {self.namespace} is gone ({waited:.0f}s)")
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


__all__ = ["FORWARDS", "KubeTarget"]
