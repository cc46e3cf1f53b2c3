"""The kubelet's and kube-proxy's part for the API-server emulator: each pod's container runs as
a REAL local process (the services from this repository, the real ``mlflow server``, this
machine's ``prometheus`` and ``prometheus-alertmanager``, ``moto`` standing in for MinIO's S3),
with the environment the pod spec gives it (``env``, ``envFrom``, ``valueFrom`` of the
ConfigMaps and Secrets in the emulator) and its volumes as directories (PVCs persist per claim,
``emptyDir`` per pod, ConfigMap volumes written out).

What differs from a node, and how it is bridged:
- No network namespaces: each pod's container port is a free local port (``HOST``/``PORT``,
  ``--port``, ``--host``, ``--web.listen-address`` are rewritten) and the emulator's probes and
  port-forwards reach it there.
- No cluster DNS: ``<svc>[.ns[.svc[.cluster.local]]]:<port>`` in env values, args and mounted
  ConfigMap files become ``127.0.0.1:<service port>``, where a kube-proxy-like TCP proxy sends
  each connection to a Ready pod of the Service's selector, chosen at random as kube-proxy's
  rules do (iptables ``--mode random --probability``). A deleted pod stays among its choices
  for ``PROXY_LAG_S``: kube-proxy learns of the change through a watch and rewrites its rules
  at most once a second (``--iptables-min-sync-period``, 1 s), so connections keep arriving
  at a pod for a moment after it is deleted — what a preStop pause is for.
  MLflow's ``--allowed-hosts`` is not rewritten; the proxy's exact address is appended, so a
  Host header arriving through a port-forward is judged by the manifest's own list.
- A Prometheus ``dns_sd_configs`` entry of type A naming a headless Service (``clusterIP:
  None``) becomes a ``file_sd_configs`` file kept current with what CoreDNS would answer: the
  Service's endpoints that the EndpointSlice marks ready (CoreDNS ``plugin/kubernetes/object/
  endpoint.go`` skips the others), i.e. Ready pods, or every running pod with
  ``publishNotReadyAddresses``; each pod's own local port stands in for its IP.
- Pod deletion: the kubelet runs the container's ``preStop`` exec hook (a real process), then
  sends SIGTERM, then SIGKILL once ``terminationGracePeriodSeconds`` (30) have passed in all
  (``pkg/kubelet/kuberuntime/kuberuntime_container.go`` ``killContainer``: the hook runs
  within the grace period, before the stop signal).
- No images: the image name picks the program; the container's ``command`` runs with this
  venv's python and mlflow. Containers that exit are not restarted (no CrashLoopBackOff).
  The MinIO image with a ``command`` (the setup Job's shell script) runs that script here with
  ``mc`` on PATH being mc_stub.py (moto has no MinIO admin API: see there).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import free_port, stop_group

from .apiserver import APP, Emulator, _ready

PROXY_LAG_S = 2.0
BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[3]
DNS = re.compile(
    r"\b([a-z0-9]([-a-z0-9]*[a-z0-9])?)(\.[a-z0-9-]+)?(\.svc)?(\.cluster\.local)?:(\d{2,5})\b"
)


def _running(pod: dict[str, Any]) -> bool:
    """A pod the endpoints controllers list at all (``ShouldPodBeInEndpoints``: not Succeeded or
    Failed, an IP assigned; the stand-in's IP is the port it listens on, checked by the caller)."""
    return pod.get("status", {}).get("phase") == "Running"


class ServiceProxy:
    """127.0.0.1:port → a Ready pod of ``app`` on ``container_port`` (kube-proxy's part).

    With ``unready`` (the Service's ``publishNotReadyAddresses``) a running pod that is not
    Ready counts too: the EndpointSlice controller marks its endpoint ready
    (``pkg/controller/endpointslice`` utils ``podToEndpoint``: ``ready :=
    service.Spec.PublishNotReadyAddresses || (serving && !terminating)``)."""

    def __init__(
        self,
        kubelet: LocalKubelet,
        namespace: str,
        app: str,
        container_port: int,
        unready: bool = False,
    ):
        self.kubelet, self.namespace, self.app, self.cport = kubelet, namespace, app, container_port
        self.unready = unready
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        choices = self.kubelet.endpoints(self.namespace, self.app, self.cport, self.unready)
        address = random.choice(choices) if choices else None
        try:
            if address is None:
                raise OSError("no ready endpoint")
            remote = socket.create_connection(address, timeout=10)
        except OSError:
            # A ClusterIP with no ready endpoint: kube-proxy's REJECT refuses the SYN; this
            # proxy has already accepted, so the client sees the connection closed instead.
            conn.close()
            return
        remote.settimeout(None)
        _pump(conn, remote)


def _pump(a: socket.socket, b: socket.socket) -> None:
    peers = {a.fileno(): (a, b), b.fileno(): (b, a)}
    try:
        while True:
            readable, _, _ = select.select(list(peers), [], [], 30)
            if not readable:
                continue
            for fd in readable:
                src, dst = peers[fd]
                data = src.recv(65536)
                if not data:
                    return
                dst.sendall(data)
    except OSError:
        return
    finally:
        a.close()
        b.close()


class LocalKubelet:
    """Starts a process per pod the emulator creates, and stops it when the pod goes."""

    def __init__(self, emu: Emulator, workdir: Path, extra_env: dict[str, str] | None = None):
        self.emu = emu
        self.workdir = workdir
        self.extra_env = extra_env or {}
        self.procs: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self.pod_ports: dict[tuple[str, str, int], int] = {}
        self.services: dict[tuple[str, str, int, bool], ServiceProxy] = {}
        self.gone: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}  # kube-proxy's lag
        self.dns_answers: dict[Path, tuple[str, str, int]] = {}  # file_sd file → ns, svc, port
        self.dns_thread: threading.Thread | None = None
        self.stopping: list[threading.Thread] = []  # pods in their preStop and grace period
        self.closed = threading.Event()
        self.lock = threading.RLock()
        self.started: list[str] = []  # pod names, in start order
        self.scratch: list[Path] = []  # emptyDir volumes
        emu.pod_hook = self.on_pod
        emu.pod_deleted_hook = self.on_pod_deleted
        emu.job_outcome = lambda job, pod: None  # the process's exit decides
        self.bin = workdir / "bin"  # `mc` for the MinIO setup Job
        self.bin.mkdir(parents=True, exist_ok=True)
        mc = self.bin / "mc"
        mc.write_text(f'#!/bin/sh\nexec "{BIN / "python"}" -m tests.targets.wire.mc_stub "$@"\n')
        mc.chmod(0o755)

    # -- kube-proxy ----------------------------------------------------------------------------

    def service_port(self, namespace: str, service: str, port: int) -> int | None:
        """The local port standing for ``service:port`` (None: no such Service)."""
        svc = self.emu.get("Service", namespace, service)
        unready = False
        if svc is not None:
            unready = bool(svc["spec"].get("publishNotReadyAddresses"))
            app = (svc["spec"].get("selector") or {}).get(APP, "")
            target: Any = port
            for p in svc["spec"].get("ports") or []:
                if p.get("port") == port:
                    target = p.get("targetPort", port)
        elif service.endswith("-service"):  # applied later in the same file: the convention
            app, target = service[: -len("-service")], port
        else:
            return None
        cport = target if isinstance(target, int) else self._named_port(namespace, app, target)
        with self.lock:
            key = (namespace, app, cport, unready)
            if key not in self.services:
                self.services[key] = ServiceProxy(self, namespace, app, cport, unready)
            return self.services[key].port

    def _named_port(self, namespace: str, app: str, name: str) -> int:
        for d in self.emu.list("Deployment", namespace):
            if (d["spec"]["selector"].get("matchLabels") or {}).get(APP) != app:
                continue
            for c in d["spec"]["template"]["spec"].get("containers") or []:
                for p in c.get("ports") or []:
                    if p.get("name") == name:
                        return int(p["containerPort"])
        raise KeyError(f"no port named {name} for {app}")

    def endpoints(
        self, namespace: str, app: str, cport: int, unready: bool = False, lag: bool = True
    ) -> list[tuple[str, int]]:
        """The pods a Service of ``app`` reaches on ``cport``; with ``lag``, also those deleted
        less than ``PROXY_LAG_S`` ago (kube-proxy has not caught up)."""
        pods = list(self.emu.list("Pod", namespace, f"{APP}={app}"))
        if lag:
            with self.lock:
                now = time.monotonic()
                pods += [
                    p
                    for (ns, _), (until, p) in self.gone.items()
                    if ns == namespace and until > now and p["metadata"]["labels"].get(APP) == app
                ]
        out = []
        for pod in pods:
            if not (_ready(pod) or (unready and _running(pod))):
                continue
            port = self.pod_ports.get((namespace, pod["metadata"]["name"], cport))
            if port:
                out.append(("127.0.0.1", port))
        return out

    def localize(self, namespace: str, text: str) -> str:
        def swap(m: re.Match[str]) -> str:
            name, ns = m.group(1), (m.group(3) or "")[1:]
            if ns and ns != namespace and not m.group(4):
                return m.group(0)
            port = self.service_port(ns or namespace, name, int(m.group(6)))
            return f"127.0.0.1:{port}" if port else m.group(0)

        return DNS.sub(swap, text)

    def _dns_sd(self, ns: str, text: str, where: Path) -> str:
        """A Prometheus config's ``dns_sd_configs`` (type A, a headless Service) → a
        ``file_sd_configs`` file that ``_answer_dns`` keeps current (see the module's doc)."""
        if "dns_sd_configs" not in text:
            return text
        config = yaml.safe_load(text)
        for job in config.get("scrape_configs") or []:
            files = []
            for sd in job.pop("dns_sd_configs", []):
                assert sd.get("type") == "A", "only A records are stood in for"
                for dns_name in sd["names"]:
                    service, _, rest = dns_name.partition(".")
                    path = where / f"dns-sd-{service}.json"
                    self.dns_answers[path] = (rest.partition(".")[0] or ns, service, sd["port"])
                    files.append(str(path))
            if files:
                job["file_sd_configs"] = [{"files": files, "refresh_interval": "5s"}]
        self._answer_dns()
        if self.dns_thread is None:
            self.dns_thread = threading.Thread(target=self._answering, daemon=True)
            self.dns_thread.start()
        return str(yaml.safe_dump(config, sort_keys=False))

    def _answering(self) -> None:
        while not self.closed.wait(0.5):
            with contextlib.suppress(Exception):  # the emulator stopped first
                self._answer_dns()

    def _answer_dns(self) -> None:
        for path, (ns, service, port) in list(self.dns_answers.items()):
            svc = self.emu.get("Service", ns, service)
            if svc is None or svc["spec"].get("clusterIP") != "None":
                targets = []  # no such headless Service: NXDOMAIN
            else:
                app = (svc["spec"].get("selector") or {}).get(APP, "")
                unready = bool(svc["spec"].get("publishNotReadyAddresses"))
                found = self.endpoints(ns, app, port, unready, lag=False)
                targets = [f"{host}:{p}" for host, p in found]
            text = json.dumps([{"targets": targets, "labels": {}}] if targets else [])
            if not path.exists() or path.read_text() != text:
                fresh = path.with_suffix(".tmp")
                fresh.write_text(text)
                fresh.replace(path)  # Prometheus must never read half a file

    # -- pods ----------------------------------------------------------------------------------

    def on_pod(self, pod: dict[str, Any]) -> None:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        try:
            self._start(ns, name, pod)
        except Exception as exc:  # shown as the container's log and exit
            self.emu.end_pod(ns, name, 128, [f"kubelet stand-in: {type(exc).__name__}: {exc}"])

    def _start(self, ns: str, name: str, pod: dict[str, Any]) -> None:
        container = pod["spec"]["containers"][0]
        podDir = self.workdir / "pods" / name
        podDir.mkdir(parents=True, exist_ok=True)
        mounts = self._volumes(ns, pod, container, podDir)
        ports = {}
        for p in container.get("ports") or []:
            ports[p["containerPort"]] = free_port()
            self.pod_ports[(ns, name, p["containerPort"])] = ports[p["containerPort"]]
        first = next(iter(ports.values()), 0)

        def local(text: str) -> str:
            return self.localize(ns, map_mounts(mounts, text))

        # Only what the pod spec says is mapped onto this machine (its mounts, its Services):
        # the stand-in's own paths stay as they are, even under a mount point such as /tmp
        # (a clone in /tmp/… had its venv's python rewritten into the pod's /tmp volume).
        spec_env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            spec_env.update(self._env_from(ns, source))
        for item in container.get("env") or []:
            spec_env[item["name"]] = self._env_value(ns, item)
        env = {
            "PATH": f"{self.bin}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(ROOT),  # the S3 stand-in's module
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "HOME": str(mounts.get("/tmp", podDir)),
            "TMPDIR": str(mounts.get("/tmp", podDir)),
            "LANG": "C.UTF-8",
            **self.extra_env,
            **{k: local(v) for k, v in spec_env.items()},
        }
        if "PORT" in env and first:
            env["PORT"] = str(first)
        if env.get("HOST") == "0.0.0.0":
            env["HOST"] = "127.0.0.1"
        argv = self._argv(container, ports, local)
        if "iris_services.mlflow_server" in argv:
            argv = [
                a + f",127.0.0.1:{self.service_port(ns, 'mlflow-service', 5000)}"
                if a.startswith("--allowed-hosts=")
                else a
                for a in argv
            ]
        log = (podDir / "output.log").open("wb")
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=str(mounts.get("/tmp", podDir)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        with self.lock:
            self.procs[(ns, name)] = proc
            self.started.append(name)
        for cport, port in ports.items():
            self.emu.serve_pod(ns, name, cport, ("127.0.0.1", port))
        threading.Thread(target=self._follow, args=(ns, name, proc, log, pod), daemon=True).start()

    def _argv(
        self, container: dict[str, Any], ports: dict[int, int], local: Callable[[str], str]
    ) -> list[str]:
        """The container's command on this machine: the spec's paths mapped (``local``) first,
        then this venv's programs and local ports put in."""
        image = container.get("image", "")
        command = list(container.get("command") or [])
        args = list(container.get("args") or [])
        first = next(iter(ports.values()), 0)
        if "minio" in image and not command:  # the server; the setup Job's script runs below
            return [
                str(BIN / "python"),
                "-m",
                "tests.targets.wire.s3_minio",
                "127.0.0.1",
                str(first),
            ]
        if "prometheus/prometheus" in image:
            command = ["/usr/bin/prometheus"]
        elif "alertmanager" in image:
            command = ["/usr/bin/prometheus-alertmanager"]
        out = []
        for a in command + args:
            if not a.startswith("--allowed-hosts="):
                a = local(a)
            if a == "python":
                a = str(BIN / "python")
            elif a == "mlflow":
                a = str(BIN / "mlflow")
            elif a.startswith("--host="):
                a = "--host=127.0.0.1"
            elif a.startswith("--port="):
                a = f"--port={ports.get(int(a.split('=')[1]), a.split('=')[1])}"
            elif a.startswith("--web.listen-address="):
                a = f"--web.listen-address=127.0.0.1:{first}"
            out.append(a)
        if "alertmanager" in image:
            out.append(f"--web.listen-address=127.0.0.1:{first}")
        return out

    def _env_from(self, ns: str, source: dict[str, Any]) -> dict[str, str]:
        if "configMapRef" in source:
            cm = self.emu.get("ConfigMap", ns, source["configMapRef"]["name"]) or {}
            return dict(cm.get("data") or {})
        if "secretRef" in source:
            secret = self.emu.get("Secret", ns, source["secretRef"]["name"]) or {}
            return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        return {}

    def _env_value(self, ns: str, item: dict[str, Any]) -> str:
        if "value" in item:
            return str(item["value"])
        ref = item.get("valueFrom") or {}
        if "secretKeyRef" in ref:
            r = ref["secretKeyRef"]
            secret = self.emu.get("Secret", ns, r["name"])
            if secret is None or r["key"] not in (secret.get("data") or {}):
                raise RuntimeError(
                    f'CreateContainerConfigError: secret "{r["name"]}" not found or no key '
                    f"{r['key']}"
                )
            return base64.b64decode(secret["data"][r["key"]]).decode()
        if "configMapKeyRef" in ref:
            r = ref["configMapKeyRef"]
            cm = self.emu.get("ConfigMap", ns, r["name"]) or {}
            return str((cm.get("data") or {}).get(r["key"], ""))
        return ""

    def _claim_dir(self, ns: str, claim: str) -> Path:
        """A bound claim's data: minikube's hostpath provisioner (``pkg/storage/
        storage_provisioner.go``) makes one directory per PV, named ``pvc-<claim uid>``, and its
        ``Delete`` removes it under the default class's ``reclaimPolicy: Delete``; so a claim
        deleted and made again (``down --purge`` then ``up``) starts empty, and the old data is
        gone (removed here when the claim no longer exists)."""
        pvc = self.emu.get("PersistentVolumeClaim", ns, claim) or {}
        uid = (pvc.get("metadata") or {}).get("uid", f"{ns}-{claim}")
        root = self.workdir / "pvc"
        live = {f"pvc-{o['metadata']['uid']}" for o in self.emu.list("PersistentVolumeClaim")}
        if root.is_dir():
            for old in root.iterdir():
                if old.name not in live:
                    shutil.rmtree(old, ignore_errors=True)
        path = root / f"pvc-{uid}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _volumes(
        self, ns: str, pod: dict[str, Any], container: dict[str, Any], pod_dir: Path
    ) -> dict[str, Path]:
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        mounts: dict[str, Path] = {}
        for m in container.get("volumeMounts") or []:
            v = volumes.get(m["name"], {})
            if "persistentVolumeClaim" in v:
                path = self._claim_dir(ns, v["persistentVolumeClaim"]["claimName"])
            elif "configMap" in v:
                path = pod_dir / "volumes" / m["name"]
                path.mkdir(parents=True, exist_ok=True)
                cm = self.emu.get("ConfigMap", ns, v["configMap"]["name"]) or {}
                for key, text in (cm.get("data") or {}).items():
                    text = self._dns_sd(ns, self.localize(ns, text), path)
                    (path / key).write_text(text)
            elif "secret" in v:
                path = pod_dir / "volumes" / m["name"]
                path.mkdir(parents=True, exist_ok=True)
                secret = self.emu.get("Secret", ns, v["secret"]["secretName"]) or {}
                data = secret.get("data") or {}
                # SecretVolumeSource: `items` projects only the listed keys, each to its path;
                # a listed key the Secret lacks fails the mount unless `optional`
                # (pkg/volume/secret/secret.go MakePayload).
                items = v["secret"].get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    if item["key"] not in data:
                        if v["secret"].get("optional"):
                            continue
                        raise RuntimeError(
                            f"MountVolume.SetUp failed: secret has no key {item['key']!r}"
                        )
                    (path / item["path"]).write_bytes(base64.b64decode(data[item["key"]]))
            else:  # emptyDir: short, as /tmp is in a container (AF_UNIX paths max 107 bytes)
                path = Path(tempfile.mkdtemp(prefix="kl-", dir="/tmp"))
                self.scratch.append(path)
            path.mkdir(parents=True, exist_ok=True)
            mounts[m["mountPath"]] = path
        if mounts:  # config files refer to each other by mount path (rule_files: /etc/...)
            for m in container.get("volumeMounts") or []:
                v = volumes.get(m["name"], {})
                if "configMap" in v:
                    for f in mounts[m["mountPath"]].iterdir():
                        f.write_text(map_mounts(mounts, f.read_text()))
        return mounts

    def _follow(
        self, ns: str, name: str, proc: subprocess.Popen[bytes], log: Any, pod: dict[str, Any]
    ) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            log.write(raw)
            log.flush()
            self.emu.log(ns, name, raw.decode(errors="replace").rstrip("\n"))
        code = proc.wait()
        log.close()
        if (pod["metadata"].get("ownerReferences") or [{}])[0].get("kind") == "Job":
            self.emu.end_pod(ns, name, code)
        elif code not in (-signal.SIGTERM, -signal.SIGKILL):
            self.emu.end_pod(ns, name, code, [f"(container exited with {code}; not restarted)"])

    def on_pod_deleted(self, pod: dict[str, Any]) -> None:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        with self.lock:
            proc = self.procs.pop((ns, name), None)
            self.gone[(ns, name)] = (time.monotonic() + PROXY_LAG_S, pod)
        if proc is None:
            return
        grace = float(pod["spec"].get("terminationGracePeriodSeconds", 30))
        hook = (pod["spec"]["containers"][0].get("lifecycle") or {}).get("preStop") or {}
        command = (hook.get("exec") or {}).get("command")

        def kill() -> None:
            started = time.monotonic()
            if command:
                with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                    subprocess.run(command, timeout=grace, check=False)
            _terminate(proc, max(grace - (time.monotonic() - started), 0.1))

        stopping = threading.Thread(target=kill, name=f"stop {name}", daemon=True)
        with self.lock:
            self.stopping.append(stopping)
        stopping.start()

    def stop(self) -> None:
        self.closed.set()
        with self.lock:
            procs = list(self.procs.values())
            self.procs.clear()
            proxies = list(self.services.values())
            stopping = list(self.stopping)
        for proc in procs:
            _terminate(proc)
        for thread in stopping:
            thread.join(40)
        for proxy in proxies:
            proxy.close()
        for path in self.scratch:
            shutil.rmtree(path, ignore_errors=True)


def map_mounts(mounts: dict[str, Path], text: str) -> str:
    """Mount paths in ``text`` → their local directories, in ONE pass: a replaced path (itself
    under /tmp) must not be rewritten again by the ``/tmp`` mount."""
    if not mounts:
        return text
    pattern = "|".join(re.escape(m) for m in sorted(mounts, key=len, reverse=True))
    return re.sub(rf"(?<![\w.-])({pattern})(?=/|\b|$)", lambda hit: str(mounts[hit.group(1)]), text)


def _terminate(proc: subprocess.Popen[bytes], grace_s: float = 10) -> None:
    """SIGTERM the pod's process group, SIGKILL after the grace period (terminationGracePeriod)."""
    stop_group(proc, grace_s)
