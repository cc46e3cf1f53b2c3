"""The Kubernetes manifests, rendered for both Kubernetes targets and checked offline.

No cluster runs here: every document is validated strictly against the Kubernetes OpenAPI
schemas of several versions (kubernetes-validate), and the promises the manifests make
(names, probes, limits, security, no secrets in plain text) are checked on the rendered YAML.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from irisctl import images, settings
from irisctl.errors import BadInput, IrisctlError
from irisctl.targets import kube
from irisctl.targets.kube import KubeTarget
from irisctl.targets.kube import manifests as kube_manifests

K8S_VERSIONS = ["1.30.0", "1.32.0", "1.34.0"]


def docs(target_name: str, tmp_path, **flags) -> list[dict]:
    target = KubeTarget(settings.load(flags, home=tmp_path), target_name)
    out = []
    for text in target.render().values():
        out += [d for d in yaml.safe_load_all(text) if d]
    return out


@pytest.fixture(params=["minikube", "kubernetes", "kubernetes, autoscaled"])
def manifests(request, tmp_path) -> list[dict]:
    extra = {"api_autoscale": "2..4"} if "autoscaled" in request.param else {}
    name = request.param.split(",")[0]
    return docs(name, tmp_path, registry="registry.example.test/team", **extra)


def pod_specs(manifests):
    for d in manifests:
        kind = d["kind"]
        if kind in ("Deployment", "Job"):
            yield d, d["spec"]["template"]["spec"]
        elif kind == "CronJob":
            yield d, d["spec"]["jobTemplate"]["spec"]["template"]["spec"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_document_is_valid_for_kubernetes(manifests, version):
    for doc in manifests:
        kubernetes_validate.validate(doc, version, strict=True)


def test_a_typo_is_caught_by_strict_validation(tmp_path):
    cron = next(d for d in docs("minikube", tmp_path) if d["kind"] == "CronJob")
    cron["spec"]["concurrencyPolic"] = cron["spec"].pop("concurrencyPolicy")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(cron, K8S_VERSIONS[-1], strict=True)


def test_seed_compatible_names(manifests):
    names = {(d["kind"], d["metadata"]["name"]) for d in manifests}
    assert ("Namespace", "iris-mlops") in names
    assert ("CronJob", "ml-model-training") in names
    for service in ("mlflow-service", "minio-service", "model-api-service", "prometheus-service"):
        assert ("Service", service) in names
    assert all(d["metadata"].get("namespace", "iris-mlops") == "iris-mlops" for d in manifests)


def test_f4_images_are_pinned_and_pulled_if_not_present(manifests):
    for _, spec in pod_specs(manifests):
        for c in spec["containers"]:
            name, _, tag = c["image"].rpartition(":")
            assert name and tag and tag != "latest", c["image"]
            assert c["imagePullPolicy"] == "IfNotPresent"


def test_g3_every_container_has_limits_and_a_restricted_security_context(manifests):
    for doc, spec in pod_specs(manifests):
        assert spec["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(c["resources"]["requests"])
            assert {"cpu", "memory"} <= set(c["resources"]["limits"])


def test_no_memory_limit_is_below_one_and_a_half_times_its_measured_peak():
    """Issue 19: limits from bench/resources.py's peaks (MEASURED_PEAK_MIB), with half again as
    much for what a container adds and what one run did not see; every measured service named."""
    peaks = kube_manifests.MEASURED_PEAK_MIB
    assert set(peaks) == set(kube.RESOURCES) - {"minio", "job"}  # MinIO, `mc`: not run locally
    for key, peak in peaks.items():
        _, request, _, limit = kube.RESOURCES[key]
        assert kube_manifests.memory_mib(limit) >= 1.5 * peak, (key, limit, peak)
        assert kube_manifests.memory_mib(request) <= kube_manifests.memory_mib(limit)


def test_the_stacks_requests_fit_minikubes_default_node_beside_kube_system():
    """minikube's default node is 2 CPUs and 4096 MB. Memory: the requests of every pod running
    at once plus the node's allowance (what doctor checks). CPU: beside kube-system's requests
    as kubeadm and CoreDNS set them (API server 250m, controller manager 200m, scheduler 100m,
    etcd 100m, CoreDNS 100m)."""
    node_mib = settings.DEFAULTS["minikube_memory_mb"][0]
    node_cpus = settings.DEFAULTS["minikube_cpus"][0]
    assert kube_manifests.stack_memory_mib() <= node_mib
    # every further model-API pod adds its request
    assert kube_manifests.stack_memory_mib(3) == kube_manifests.stack_memory_mib() + 2 * 384
    cpu_m = sum(
        int(cpu.removesuffix("m")) if cpu.endswith("m") else int(cpu) * 1000
        for key, (cpu, _, _, _) in kube.RESOURCES.items()
        if key != "job"
    )
    assert cpu_m + 750 <= node_cpus * 1000, cpu_m


def test_g3_our_images_run_with_a_read_only_root_and_a_tmp_volume(manifests):
    for _, spec in pod_specs(manifests):
        for c in spec["containers"]:
            if c["image"].rsplit("/", 1)[-1].startswith("irisctl-services:"):
                assert c["securityContext"]["readOnlyRootFilesystem"] is True
                assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"])


def test_b5_long_running_containers_have_probes(manifests):
    for doc, spec in pod_specs(manifests):
        if doc["kind"] != "Deployment":
            continue
        for c in spec["containers"]:
            assert "readinessProbe" in c and "livenessProbe" in c, doc["metadata"]["name"]
    api = next(s for d, s in pod_specs(manifests) if d["metadata"]["name"] == "model-api")
    assert api["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["containers"][0]["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_data_lives_on_persistent_volume_claims_not_empty_dirs(manifests):
    claims = {d["metadata"]["name"] for d in manifests if d["kind"] == "PersistentVolumeClaim"}
    assert claims == {"minio-data", "mlflow-data", "prometheus-data"}
    for doc, spec in pod_specs(manifests):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec["containers"]:
            for mount in c.get("volumeMounts", []):
                if mount["mountPath"] in ("/data", "/prometheus"):
                    assert "persistentVolumeClaim" in volumes[mount["name"]], doc["metadata"][
                        "name"
                    ]


def test_g1_no_secret_values_in_env_or_config_maps(manifests):
    for _, spec in pod_specs(manifests):
        for c in spec["containers"]:
            for env in c.get("env", []):
                if any(w in env["name"] for w in ("PASSWORD", "SECRET", "ACCESS_KEY", "STORE_URI")):
                    assert "valueFrom" in env and "value" not in env, env["name"]
    assert not [d for d in manifests if d["kind"] == "Secret"]  # generated at up, never rendered
    for d in manifests:
        if d["kind"] == "ConfigMap":
            text = yaml.safe_dump(d["data"]).lower()
            assert "password" not in text and "minio123" not in text


def test_g4_services_are_cluster_internal(manifests):
    for d in manifests:
        if d["kind"] == "Service":
            assert d["spec"]["type"] == "ClusterIP"


def test_d5_cronjob_keeps_one_training_and_catches_up(manifests):
    cron = next(d for d in manifests if d["kind"] == "CronJob")["spec"]
    assert cron["schedule"] == "0 3 * * *" and cron["timeZone"] == "Etc/UTC"
    # No start window: a run missed while the cluster was off starts on waking (the wire test
    # tests/targets/wire/test_nightly_schedule.py shows the controller skipping it otherwise).
    assert cron["concurrencyPolicy"] == "Forbid" and "startingDeadlineSeconds" not in cron
    job = cron["jobTemplate"]["spec"]
    assert job["backoffLimit"] >= 1 and job["activeDeadlineSeconds"] >= 300
    # The trainer's own verdicts (1 failed, 75 locked) end the Job; the rest may retry.
    fail_job = next(r for r in job["podFailurePolicy"]["rules"] if r["action"] == "FailJob")
    assert set(fail_job["onExitCodes"]["values"]) == {1, 75}


def test_e7_mlflow_allows_in_cluster_host_names_and_proxies_artifacts(manifests):
    mlflow = next(s for d, s in pod_specs(manifests) if d["metadata"]["name"] == "mlflow")
    args = mlflow["containers"][0]["args"]
    hosts = next(a for a in args if a.startswith("--allowed-hosts=")).split("=", 1)[1].split(",")
    for host in ("mlflow-service:5000", "mlflow-service.iris-mlops.svc.cluster.local:5000"):
        assert host in hosts
    assert "--serve-artifacts" in args and "--artifacts-destination=s3://mlflow/artifacts" in args


def test_e7_a_real_mlflow_with_the_rendered_hosts_answers_in_cluster_names_only(tmp_path):
    """MLflow started here with the manifest's own --allowed-hosts (plus this test's port)."""
    import httpx

    from tests.conftest import MlflowServer, free_port

    spec = next(
        s for d, s in pod_specs(docs("minikube", tmp_path)) if d["metadata"]["name"] == "mlflow"
    )
    allowed = next(a for a in spec["containers"][0]["args"] if a.startswith("--allowed-hosts="))
    port = free_port()
    server = MlflowServer(tmp_path, port, extra_args=(f"{allowed},127.0.0.1:{port}",))
    server.start()
    try:
        url = f"{server.url}/api/2.0/mlflow/experiments/search?max_results=1"
        for host in (
            "mlflow-service:5000",
            "mlflow-service.iris-mlops:5000",
            "mlflow-service.iris-mlops.svc:5000",
            "mlflow-service.iris-mlops.svc.cluster.local:5000",
            "localhost:5000",
        ):
            assert httpx.get(url, headers={"Host": host}, timeout=10).status_code == 200, host
        assert httpx.get(url, headers={"Host": "evil.example"}, timeout=10).status_code == 403
    finally:
        server.stop()


def test_kubernetes_target_uses_the_registry_minikube_does_not(tmp_path):
    def image(target: str, name: str = "model-api") -> str:
        d = docs(target, tmp_path, registry="registry.example.test/team")
        return next(s for x, s in pod_specs(d) if x["metadata"]["name"] == name)["containers"][0][
            "image"
        ]

    # model-api runs the slim image, the other services the full one.
    assert image("kubernetes").startswith("registry.example.test/team/irisctl-model-api:")
    assert image("minikube").startswith("irisctl-model-api:")
    assert image("kubernetes", "monitor").startswith("registry.example.test/team/irisctl-services:")
    assert image("minikube", "monitor").startswith("irisctl-services:")


def test_image_tag_follows_the_build_context(tmp_path, monkeypatch):
    files = {"Dockerfile": tmp_path / "Dockerfile", "iris_services/app.py": tmp_path / "app.py"}
    for f in files.values():
        f.write_text("one")
    monkeypatch.setattr(images, "build_context", lambda image="services": files)
    first = images.services_image_tag()
    assert images.services_image_tag() == first
    files["iris_services/app.py"].write_text("two")
    assert images.services_image_tag() != first


def test_image_tag_covers_the_modes_the_images_files_get(tmp_path, monkeypatch):
    """An image built while the context kept the caller's umask (root 0600 files) shares no tag
    with one built with normalised modes, so a broken image is never reused."""
    from irisctl.clients import docker as docker_client

    files = {"Dockerfile": tmp_path / "Dockerfile"}
    files["Dockerfile"].write_text("FROM scratch")
    monkeypatch.setattr(images, "build_context", lambda image="services": files)
    normalised = images.services_image_tag()
    monkeypatch.setattr(docker_client, "CONTEXT_FILE_MODE", 0o600)
    assert images.services_image_tag() != normalised


def test_namespace_is_configurable_and_validated(tmp_path):
    assert {
        d["metadata"].get("namespace")
        for d in docs("minikube", tmp_path, namespace="ml")
        if d["kind"] != "Namespace"
    } == {"ml"}
    with pytest.raises(IrisctlError):
        docs("minikube", tmp_path, namespace="Not_A_Name")


def test_cluster_prometheus_config_passes_promtool(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is required: apt-get install prometheus")
    config = next(
        d
        for d in docs("minikube", tmp_path)
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "prometheus-config"
    )
    (tmp_path / "alerts.yml").write_text(config["data"]["alerts.yml"])
    (tmp_path / "prometheus.yml").write_text(
        config["data"]["prometheus.yml"].replace(
            "/etc/prometheus/alerts.yml", str(tmp_path / "alerts.yml")
        )
    )
    proc = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_slim_model_api_image_holds_only_the_api_and_its_shared_code():
    files = images.build_context("model-api")
    assert files["Dockerfile"].name == "api.Dockerfile"
    code = {name for name in files if name.startswith("iris_services/")}
    assert "iris_services/api/app.py" in code and "iris_services/common/settings.py" in code
    assert not any(n.startswith(("iris_services/train/", "iris_services/monitor/")) for n in code)
    lines = files["requirements.txt"].read_text().lower().splitlines()
    packages = {ln.split(">")[0].strip() for ln in lines if ln and not ln.startswith("#")}
    assert "onnxruntime" in packages and "httpx" in packages
    assert not packages & {"mlflow", "mlflow-skinny", "scikit-learn", "pandas", "scipy"}
    assert images.services_image_tag("model-api") != images.services_image_tag()


def test_mlflow_telemetry_is_off_in_the_settings_and_the_image(manifests):
    from irisctl import render

    config = next(d for d in manifests if d["metadata"]["name"] == "iris-settings")
    assert config["data"]["MLFLOW_DISABLE_TELEMETRY"] == "true" == config["data"]["DO_NOT_TRACK"]
    dockerfile = render.read("docker/Dockerfile")
    assert "MLFLOW_DISABLE_TELEMETRY=true" in dockerfile and "DO_NOT_TRACK=true" in dockerfile


# -- issue 25 item 5: who may reach whom -----------------------------------------------------


def selects(selector: dict, labels: dict) -> bool:
    """A LabelSelector (matchLabels, matchExpressions) as the API server evaluates it."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def pod_labels(manifests) -> dict[str, dict]:
    """Every pod the manifests create → its labels (a Deployment's, Job's or CronJob's pods)."""
    out = {}
    for d, _spec in pod_specs(manifests):
        template = (
            d["spec"]["jobTemplate"]["spec"]["template"]
            if d["kind"] == "CronJob"
            else d["spec"]["template"]
        )
        out[f"{d['kind']}/{d['metadata']['name']}"] = template["metadata"]["labels"]
    return out


def test_network_policies_select_exactly_the_intended_pods(manifests):
    pods = pod_labels(manifests)
    policies = {d["metadata"]["name"]: d for d in manifests if d["kind"] == "NetworkPolicy"}
    seen = {}
    for name, policy in policies.items():
        spec = policy["spec"]
        assert spec["policyTypes"] == ["Ingress"]  # egress stays open: no DNS rule to forget
        (rule,) = spec["ingress"]
        (source,) = rule["from"]
        seen[name] = (
            sorted(p for p, labels in pods.items() if selects(spec["podSelector"], labels)),
            sorted(p for p, labels in pods.items() if selects(source["podSelector"], labels)),
            sorted(port["port"] for port in rule["ports"]),
        )
    assert seen == {
        "mlflow-ingress": (
            ["Deployment/mlflow"],
            ["CronJob/ml-model-training", "Deployment/model-api", "Deployment/monitor"],
            [5000],
        ),
        "minio-ingress": (
            ["Deployment/minio"],
            ["Deployment/mlflow", "Job/minio-create-bucket"],
            [9000],
        ),
        "alertmanager-ingress": (["Deployment/alertmanager"], ["Deployment/prometheus"], [9093]),
    }
    # The ports the policies open are the ones the selected pods listen on.
    for d, spec in pod_specs(manifests):
        for policy in policies.values():
            labels = pod_labels([d]).popitem()[1]
            if selects(policy["spec"]["podSelector"], labels):
                listening = {p["containerPort"] for c in spec["containers"] for p in c["ports"]}
                assert {p["port"] for p in policy["spec"]["ingress"][0]["ports"]} <= listening


def test_a_selector_that_matches_nothing_would_be_caught():
    assert not selects(
        {"matchLabels": {"app.kubernetes.io/name": "mlfow"}}, {"app.kubernetes.io/name": "mlflow"}
    )


def test_the_minio_console_is_not_exposed_unless_asked(tmp_path):
    def service_ports(**flags) -> set[int]:
        found = docs("minikube", tmp_path, **flags)
        svc = next(d for d in found if d["metadata"]["name"] == "minio-service")
        return {p["port"] for p in svc["spec"]["ports"]}

    assert service_ports() == {9000}
    assert service_ports(minio_console=True) == {9000, 9001}


def test_mlflow_holds_a_bucket_limited_minio_user_not_the_root_keys(manifests):
    """What the wire tests cannot show (moto has no MinIO admin API): the rendered setup script
    and policy. MLflow's keys are the user's; only MinIO and the setup Job see root's."""
    keys_of = {}
    for d, spec in pod_specs(manifests):
        keys_of[d["metadata"]["name"]] = {
            e["valueFrom"]["secretKeyRef"]["key"]
            for c in spec["containers"]
            for e in c.get("env") or []
            if "secretKeyRef" in (e.get("valueFrom") or {})
        }
    root = {"minio-root-user", "minio-root-password"}
    assert {n for n, keys in keys_of.items() if keys & root} == {"minio", "minio-create-bucket"}
    assert {"minio-mlflow-user", "minio-mlflow-password"} <= keys_of["mlflow"]

    setup = next(d for d in manifests if d["metadata"]["name"] == "minio-setup")
    policy = json.loads(setup["data"]["mlflow-policy.json"])
    resources = {r for s in policy["Statement"] for r in s["Resource"]}
    assert resources == {"arn:aws:s3:::mlflow", "arn:aws:s3:::mlflow/*"}
    assert all(s["Effect"] == "Allow" for s in policy["Statement"])
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert all(a.startswith("s3:") and "*" not in a for a in actions)
    assert "s3:ListAllMyBuckets" not in actions

    script = setup["data"]["setup.sh"]
    assert script.startswith("set -eu\n")
    for line in (
        'mc mb --ignore-existing "iris/$S3_BUCKET"',
        "mc admin policy create iris iris-mlflow /setup/mlflow-policy.json",
        'mc admin user add iris "$MLFLOW_ACCESS_KEY" "$MLFLOW_SECRET_KEY"',
        'mc admin policy attach iris iris-mlflow --user "$MLFLOW_ACCESS_KEY"',
    ):
        assert line in script
    if shutil.which("sh"):  # the script is valid shell
        subprocess.run(["sh", "-n", "-c", script], check=True)
    job = next(d for d in manifests if d["kind"] == "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["/bin/sh", "/setup/setup.sh"]
    env = {e["name"] for e in container["env"]}
    assert {"S3_BUCKET", "ROOT_ACCESS_KEY", "MLFLOW_ACCESS_KEY", "MLFLOW_SECRET_KEY"} <= env


WEBHOOK = "https://hooks.example.test/services/T0/B0/tok3n-Secret?x=1&y=2"
BACKEND = "postgresql://mlflow:pa55-Word@db.example.test:5432/mlflow"


def test_the_alert_webhook_url_and_the_backend_password_are_in_no_rendered_document(tmp_path):
    """Issue 25 item 7: the webhook URL lives in the Secret and Alertmanager reads it from a
    file (`url_file`); neither it nor the backend URI's password is in a ConfigMap, an argv or
    an annotation of what `render` prints and `up` applies."""
    found = docs("minikube", tmp_path, alert_webhook_url=WEBHOOK, backend_store_uri=BACKEND)
    text = json.dumps(found)
    for secret in ("tok3n-Secret", "pa55-Word", "hooks.example.test", "db.example.test"):
        assert secret not in text, secret
    config = next(d for d in found if d["metadata"]["name"] == "alertmanager-config")
    am = yaml.safe_load(config["data"]["alertmanager.yml"])
    assert am["route"]["receiver"] == "webhook"
    hook = am["receivers"][1]["webhook_configs"][0]
    assert "url" not in hook and hook["url_file"] == kube.manifests.WEBHOOK_URL_FILE
    # The file is the Secret's key, projected to exactly that path, in the Alertmanager pod only.
    pods = {d["metadata"]["name"]: spec for d, spec in pod_specs(found)}
    holders = {n for n, spec in pods.items() if kube.manifests.WEBHOOK_KEY in json.dumps(spec)}
    assert holders == {"alertmanager"}
    spec = pods["alertmanager"]
    volume = next(v for v in spec["volumes"] if v.get("secret"))
    item = volume["secret"]["items"][0]
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == volume["name"])
    assert item["key"] == kube.manifests.WEBHOOK_KEY
    assert f"{mount['mountPath']}/{item['path']}" == kube.manifests.WEBHOOK_URL_FILE
    # Without a webhook: no receiver, no mount (the Secret has no such key then).
    plain = docs("minikube", tmp_path)
    assert kube.manifests.WEBHOOK_KEY not in json.dumps(plain)


def test_a_changed_webhook_url_or_backend_uri_still_rolls_the_pods(tmp_path):
    def checksum(name, **flags):
        found = docs("minikube", tmp_path, **flags)
        d = next(d for d in found if d["kind"] == "Deployment" and d["metadata"]["name"] == name)
        return d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum("alertmanager", alert_webhook_url=WEBHOOK) != checksum(
        "alertmanager", alert_webhook_url=WEBHOOK + "3"
    )
    assert checksum("mlflow", backend_store_uri=BACKEND) != checksum(
        "mlflow", backend_store_uri=BACKEND.replace("pa55", "pa56")
    )


def test_render_redacts_the_webhook_url_where_the_local_config_holds_it(tmp_path):
    from irisctl import ops

    config = settings.load({"target": "local", "alert_webhook_url": WEBHOOK}, home=tmp_path)
    files = ops.render(config)
    text = "".join(files.values())
    assert "tok3n-Secret" not in text and "tok3n" not in text
    assert (
        yaml.safe_load(files["alertmanager.yml"])["receivers"][1]["webhook_configs"][0]["url"]
        == "[redacted]"
    )


@pytest.mark.parametrize("target_name", ["minikube", "kubernetes"])
def test_the_model_api_reads_the_feedback_settings_and_spools_on_an_empty_dir(
    target_name, tmp_path
):
    rendered = docs(target_name, tmp_path, feedback_max_age_days=0.5, live_accuracy_min_labels=20)
    config = next(d for d in rendered if d["metadata"]["name"] == "iris-settings")["data"]
    assert config["IRIS_FEEDBACK_MAX_AGE_SECONDS"] == "43200.0"
    assert config["IRIS_LIVE_ACCURACY_MIN_LABELS"] == "20"
    specs = {d["metadata"]["name"]: s for d, s in pod_specs(rendered)}
    api = specs["model-api"]["containers"][0]
    spool = next(e["value"] for e in api["env"] if e["name"] == "IRIS_FEEDBACK_SPOOL_DIR")
    # The root filesystem is read-only; an emptyDir is writable and survives container restarts.
    mount = next(m for m in api["volumeMounts"] if m["mountPath"] == spool)
    assert not mount.get("readOnly")
    volume = next(v for v in specs["model-api"]["volumes"] if v["name"] == mount["name"])
    assert "emptyDir" in volume
    for name, spec in specs.items():  # the trainer and the others need no spool
        if name != "model-api":
            envs = [e["name"] for c in spec["containers"] for e in c.get("env", [])]
            assert "IRIS_FEEDBACK_SPOOL_DIR" not in envs, name


def _api_objects(tmp_path, **flags) -> dict[str, dict]:
    return {
        d["kind"]: d
        for d in docs("minikube", tmp_path, **flags)
        if d["metadata"]["name"] in ("model-api", "model-api-pods")
    }


def test_one_model_api_pod_by_default_without_autoscaler_or_budget(tmp_path):
    found = _api_objects(tmp_path)
    assert found["Deployment"]["spec"]["replicas"] == 1
    assert "HorizontalPodAutoscaler" not in found and "PodDisruptionBudget" not in found


def test_api_replicas_sets_the_count_and_two_get_a_disruption_budget(tmp_path):
    found = _api_objects(tmp_path, api_replicas=3)
    assert found["Deployment"]["spec"]["replicas"] == 3
    assert "HorizontalPodAutoscaler" not in found
    assert found["PodDisruptionBudget"]["spec"] == {
        "maxUnavailable": 1,  # never blocks a drain, even of a single pod
        "selector": {"matchLabels": {"app.kubernetes.io/name": "model-api"}},
    }


def test_api_autoscale_leaves_the_count_to_a_cpu_autoscaler(tmp_path):
    found = _api_objects(tmp_path, api_autoscale="1..5")
    assert "replicas" not in found["Deployment"]["spec"]  # an applied count would reset the HPA's
    hpa = found["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 5)
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "model-api",
    }
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert "PodDisruptionBudget" in found  # up to 5 pods


@pytest.mark.parametrize("bad", ["0..2", "3..2", "2..21", "2-4", "four", "..3"])
def test_a_bad_autoscale_range_is_refused(tmp_path, bad):
    with pytest.raises(BadInput, match="api_autoscale"):
        settings.load({"api_autoscale": bad}, home=tmp_path)


@pytest.mark.parametrize("bad", [0, 21, -1])
def test_a_bad_replica_count_is_refused(tmp_path, bad):
    with pytest.raises(BadInput, match="api_replicas"):
        settings.load({"api_replicas": bad}, home=tmp_path)


def test_a_rollout_drains_a_model_api_pod_before_it_stops(manifests):
    """No request is dropped while pods are replaced: a new pod is Ready before an old one goes
    (maxUnavailable 0), and a deleted pod keeps serving through a preStop pause while kube-proxy
    and DNS drop it, inside the grace period (the wire e2e rolls two replicas under traffic)."""
    api = next(
        d for d in manifests if d["kind"] == "Deployment" and d["metadata"]["name"] == "model-api"
    )
    assert api["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = api["spec"]["template"]["spec"]
    pause = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep" and int(pause[1]) >= 2  # longer than kube-proxy's sync lag
    # the pause, uvicorn's 10 s graceful shutdown and the last feedback round fit the grace
    assert int(pause[1]) + 10 + 5 <= pod["terminationGracePeriodSeconds"]


def test_prometheus_scrapes_every_model_api_pod_through_a_headless_service(manifests):
    svc = next(
        d for d in manifests if d["kind"] == "Service" and d["metadata"]["name"] == "model-api-pods"
    )
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    config = next(
        d
        for d in manifests
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "prometheus-config"
    )
    jobs = {
        j["job_name"]: j for j in yaml.safe_load(config["data"]["prometheus.yml"])["scrape_configs"]
    }
    assert jobs["iris-model-api"]["dns_sd_configs"] == [
        {
            "names": ["model-api-pods.iris-mlops.svc"],
            "type": "A",
            "port": 8080,
            "refresh_interval": "15s",
        }
    ]
