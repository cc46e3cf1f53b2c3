"""The API-server emulator itself, through the real kubernetes client and the real kubectl:
if these fail, the stand-in no longer behaves like the documented API server."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from tests.conftest import wait_until

from .conftest import PROFILE

NS = "iris-mlops"


def ns_doc(name: str = NS) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def deployment(name: str = "web", probe_path: str = "/readyz") -> dict:
    labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": name,
                            "image": "irisctl-services:test",
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {"httpGet": {"path": probe_path, "port": "http"}},
                        }
                    ]
                },
            },
        },
    }


@pytest.fixture
def clients(kubeconfig):
    from kubernetes import client, config
    from kubernetes.dynamic import DynamicClient

    api = config.new_client_from_config(config_file=str(kubeconfig), context=PROFILE)
    return DynamicClient(api), client.CoreV1Api(api)


def apply(dyn, doc):
    res = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    return dyn.server_side_apply(
        res,
        body=doc,
        name=doc["metadata"]["name"],
        namespace=doc["metadata"].get("namespace"),
        field_manager="irisctl",
        force_conflicts=True,
    )


def test_server_side_apply_creates_then_merges_and_bumps_generation(clients):
    dyn, _ = clients
    apply(dyn, ns_doc())
    first = apply(dyn, deployment()).to_dict()
    assert first["metadata"]["generation"] == 1
    changed = deployment()
    changed["spec"]["template"]["metadata"]["annotations"] = {"checksum/config": "abc"}
    second = apply(dyn, changed).to_dict()
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert second["metadata"]["generation"] == 2


def test_errors_are_status_objects_with_message_and_reason(clients):
    from kubernetes.dynamic.exceptions import ConflictError, NotFoundError, UnprocessibleEntityError

    dyn, _ = clients
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    with pytest.raises(NotFoundError) as nf:
        dyn.create(deployments, body=deployment(), namespace=NS)
    assert json.loads(nf.value.body)["message"] == 'namespaces "iris-mlops" not found'
    apply(dyn, ns_doc())
    dyn.create(deployments, body=deployment(), namespace=NS)
    with pytest.raises(ConflictError) as conflict:
        dyn.create(deployments, body=deployment(), namespace=NS)
    status = json.loads(conflict.value.body)
    assert (status["reason"], status["code"]) == ("AlreadyExists", 409)
    assert status["message"] == 'deployments.apps "web" already exists'
    bad = deployment("other")
    bad["spec"]["selector"]["matchLabels"] = {"app": "nope"}
    with pytest.raises(UnprocessibleEntityError) as invalid:
        dyn.create(deployments, body=bad, namespace=NS)
    assert (
        "`selector` does not match template `labels`" in json.loads(invalid.value.body)["message"]
    )


def test_a_deleted_namespace_stays_terminating_and_refuses_new_content(apiserver, clients):
    from kubernetes.dynamic.exceptions import ForbiddenError

    dyn, _ = clients
    apiserver.terminate_s = 1.5
    apply(dyn, ns_doc())
    namespaces = dyn.resources.get(api_version="v1", kind="Namespace")
    dyn.delete(namespaces, name=NS)
    assert dyn.get(namespaces, name=NS).to_dict()["status"]["phase"] == "Terminating"
    with pytest.raises(ForbiddenError) as refused:
        apply(dyn, deployment())
    assert (
        "unable to create new content in namespace iris-mlops because it is being terminated"
        in json.loads(refused.value.body)["message"]
    )
    wait_until(lambda: not apiserver.list("Namespace"), timeout_s=10)
    apply(dyn, ns_doc())  # gone: creatable again


def test_pods_follow_their_readiness_probe_against_a_real_server(apiserver, clients, http_server):
    dyn, _ = clients
    apply(dyn, ns_doc())
    apply(dyn, deployment())
    pods = lambda: apiserver.list("Pod", NS, "app.kubernetes.io/name=web")  # noqa: E731
    wait_until(lambda: len(pods()) == 1, timeout_s=5)
    time.sleep(0.5)
    assert pods()[0]["status"]["phase"] == "Running"
    assert not pods()[0]["status"]["containerStatuses"][0]["ready"]
    http_server.status_for["/readyz"] = 503
    apiserver.serve("web", 8080, "127.0.0.1", http_server.port)
    events = lambda: apiserver.list("Event", NS)  # noqa: E731
    wait_until(lambda: "statuscode: 503" in json.dumps(events()), timeout_s=5)
    (event,) = [e for e in events() if e["involvedObject"]["name"] == pods()[0]["metadata"]["name"]]
    assert (event["reason"], event["type"]) == ("Unhealthy", "Warning")
    assert "statuscode: 503" not in json.dumps(pods()[0]["status"]["conditions"])
    http_server.status_for["/readyz"] = 200
    wait_until(lambda: pods()[0]["status"]["containerStatuses"][0]["ready"], timeout_s=5)
    d = apiserver.get("Deployment", NS, "web")
    wait_until(
        lambda: (apiserver.get("Deployment", NS, "web")["status"].get("readyReplicas")) == 1,
        timeout_s=5,
    )
    d = apiserver.get("Deployment", NS, "web")
    assert d["status"]["observedGeneration"] == 1
    assert d["status"]["updatedReplicas"] == d["status"]["availableReplicas"] == 1


def test_jobs_succeed_or_fail_with_conditions_and_logs(apiserver, clients):
    dyn, core = clients
    apply(dyn, ns_doc())
    apiserver.job_outcome = lambda job, pod: (0, ["trained"]) if job == "good" else (1, ["boom"])
    jobs = dyn.resources.get(api_version="batch/v1", kind="Job")
    for name in ("good", "bad"):
        body = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "backoffLimit": 1,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "trainer", "image": "irisctl-services:test"}],
                    }
                },
            },
        }
        dyn.create(jobs, body=body, namespace=NS)

    def condition(name):
        st = (apiserver.get("Job", NS, name) or {}).get("status") or {}
        return [c["type"] for c in st.get("conditions", []) if c["type"] in ("Complete", "Failed")]

    wait_until(
        lambda: condition("good") == ["Complete"] and condition("bad") == ["Failed"], timeout_s=5
    )
    assert apiserver.get("Job", NS, "bad")["status"]["failed"] == 2  # backoffLimit 1: 2 pods
    assert len(apiserver.list("Pod", NS, "job-name=bad")) == 2
    assert apiserver.get("Job", NS, "good")["status"]["succeeded"] == 1
    pod = apiserver.list("Pod", NS, "job-name=bad")[0]
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1
    assert core.read_namespaced_pod_log(pod["metadata"]["name"], NS) == "boom\n"


def test_follow_streams_log_lines_until_the_container_ends(apiserver, clients):
    dyn, core = clients
    apply(dyn, ns_doc())
    apiserver.job_outcome = lambda job, pod: None  # ended by the test
    jobs = dyn.resources.get(api_version="batch/v1", kind="Job")
    dyn.create(
        jobs,
        namespace=NS,
        body={
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "slow"},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "trainer", "image": "irisctl-services:test"}],
                    }
                }
            },
        },
    )
    wait_until(lambda: apiserver.list("Pod", NS, "job-name=slow"), timeout_s=5)
    pod = apiserver.list("Pod", NS, "job-name=slow")[0]["metadata"]["name"]
    apiserver.log(NS, pod, "first")
    resp = core.read_namespaced_pod_log(pod, NS, follow=True, _preload_content=False)
    got = []
    chunks = resp.stream(64)
    got.append(next(chunks))
    apiserver.end_pod(NS, pod, 0, ["last"])
    got.extend(chunks)
    assert b"".join(got) == b"first\nlast\n"


def test_portforward_pipes_twenty_concurrent_connections(
    apiserver, clients, http_server, kubeconfig
):
    from concurrent.futures import ThreadPoolExecutor

    from kubernetes import client, config
    from kubernetes.stream import portforward

    dyn, _ = clients
    apply(dyn, ns_doc())
    apply(dyn, deployment())
    apiserver.serve("web", 8080, "127.0.0.1", http_server.port)
    wait_until(lambda: apiserver.list("Pod", NS), timeout_s=5)
    pod = apiserver.list("Pod", NS)[0]["metadata"]["name"]

    def one(i):
        # One ApiClient per stream: kubernetes.stream patches call_api (not thread-safe).
        api = config.new_client_from_config(config_file=str(kubeconfig), context=PROFILE)
        fwd = portforward(
            client.CoreV1Api(api).connect_get_namespaced_pod_portforward, pod, NS, ports="8080"
        )
        sock = fwd.socket(8080)
        sock.setblocking(True)
        sock.sendall(f"GET /n{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        sock.close()
        return data

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(one, range(20)))
    assert all(f"/n{i} 200".encode() in a for i, a in enumerate(answers)), answers
    assert apiserver.forwards == 20


def test_portforward_reports_the_kubelets_refusal_on_the_error_channel(apiserver, clients):
    from kubernetes.stream import portforward

    dyn, core = clients
    apply(dyn, ns_doc())
    apply(dyn, deployment())
    wait_until(lambda: apiserver.list("Pod", NS), timeout_s=5)
    pod = apiserver.list("Pod", NS)[0]["metadata"]["name"]
    fwd = portforward(core.connect_get_namespaced_pod_portforward, pod, NS, ports="8080")
    sock = fwd.socket(8080)
    sock.setblocking(True)
    assert sock.recv(10) == b""
    wait_until(lambda: fwd.error(8080) is not None, timeout_s=5)
    assert "dial tcp4 127.0.0.1:8080: connect: connection refused" in fwd.error(8080)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_applies_dry_run_and_gets(apiserver, kubeconfig, tmp_path):
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": [ns_doc(), deployment()]})
    run = lambda *a, **kw: subprocess.run(  # noqa: E731
        ["kubectl", "--context", PROFILE, *a], capture_output=True, text=True, timeout=60, **kw
    )
    dry = run("apply", "--dry-run=server", "-f", "-", input=manifest)
    # As on a real server: a dry-run creates nothing, so not the namespace its objects need.
    assert dry.returncode == 1
    assert 'namespaces "iris-mlops" not found' in dry.stderr
    assert apiserver.list("Namespace") == []
    assert run("apply", "-f", "-", input=json.dumps(ns_doc())).returncode == 0
    dry = run("apply", "--dry-run=server", "-f", "-", input=manifest)
    assert dry.returncode == 0, dry.stderr
    assert "deployment.apps/web created (server dry run)" in dry.stdout
    assert apiserver.list("Deployment") == []
    real = run("apply", "--server-side", "--field-manager=irisctl", "-f", "-", input=manifest)
    assert real.returncode == 0, real.stderr
    got = run("get", "deployments", "-n", NS, "-o", "json")
    assert got.returncode == 0, got.stderr
    assert [d["metadata"]["name"] for d in json.loads(got.stdout)["items"]] == ["web"]


def test_refused_pods_show_as_replica_failure_and_events_select_by_field(apiserver, clients):
    dyn, core = clients
    apply(dyn, ns_doc())
    apiserver.pod_create_error[(NS, "web")] = "exceeded quota: compute, requested: memory=768Mi"
    apply(dyn, deployment())
    wait_until(lambda: apiserver.list("ReplicaSet", NS), timeout_s=5)
    rs = apiserver.list("ReplicaSet", NS)[0]
    (cond,) = rs["status"]["conditions"]
    assert (cond["type"], cond["reason"]) == ("ReplicaFailure", "FailedCreate")
    assert "is forbidden: exceeded quota" in cond["message"]
    d = apiserver.get("Deployment", NS, "web")
    assert "ReplicaFailure" in [c["type"] for c in d["status"]["conditions"]]
    assert apiserver.list("Pod", NS) == []
    events = core.list_namespaced_event(
        NS, field_selector=f"involvedObject.name={rs['metadata']['name']}"
    ).items
    assert [e.reason for e in events] == ["FailedCreate"]
    assert core.list_namespaced_event(NS, field_selector="involvedObject.name=nope").items == []
