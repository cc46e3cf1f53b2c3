"""The services image, really built on a real Docker engine and really run.

Nothing can be pulled here, so the base image is made locally: a Debian bookworm minbase from
debootstrap (Python 3.11), with this machine's CA bundle so pip reaches the package registries.
Containers run with host networking against an MLflow server on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from iris_services.common.settings import TrainerSettings
from iris_services.train import publish
from tests.conftest import docker, free_port, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def images(base_image, tmp_path_factory) -> dict[str, str]:
    env = {**os.environ, "IRISCTL_HOME": str(tmp_path_factory.mktemp("build-home"))}
    proc = subprocess.run(
        [sys.executable, "-m", "irisctl", "build", "--base-image", base_image, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    images = json.loads(proc.stdout)
    assert set(images) == {"mlflow", "trainer", "model-api", "monitor"}
    assert images["model-api"].startswith("irisctl-model-api:")
    assert images["mlflow"] == images["trainer"] == images["monitor"]
    assert images["trainer"].startswith("irisctl-services:")
    assert not any(tag.endswith(":latest") for tag in images.values())
    again = subprocess.run(
        [sys.executable, "-m", "irisctl", "build", "--base-image", base_image],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0 and again.stdout.count("not rebuilt") == 2
    return images


@pytest.fixture(scope="session")
def image(images) -> str:
    """The full services image (trainer, monitor, MLflow)."""
    return images["trainer"]


@pytest.fixture(scope="session")
def api_image(images) -> str:
    """The slim model-API image."""
    return images["model-api"]


def run_args(image: str, env: dict[str, str]) -> list[str]:
    """As the Kubernetes manifests run it: non-root, read-only root, a writable /tmp, and the
    signing key as a read-only file (there: a Secret volume, 0440 through fsGroup)."""
    import tempfile

    from iris_services.common import signing

    flags = ["--network", "host", "--read-only", "--tmpfs", "/tmp:rw,mode=1777"]
    env = dict(env)
    key_file = env.get(signing.KEY_FILE_ENV) or os.environ.get(signing.KEY_FILE_ENV)
    if key_file:  # the session's key (tests/conftest.py), as the trainer and API get theirs
        copy = Path(tempfile.mkdtemp(prefix="iris-key-")) / "key"
        copy.write_text(Path(key_file).read_text())
        copy.chmod(0o444)  # the container's UID 10001 is not the key file's owner here
        flags += ["-v", f"{copy}:/var/run/iris-signing/key:ro"]
        env[signing.KEY_FILE_ENV] = "/var/run/iris-signing/key"
    for key, value in env.items():
        flags += ["-e", f"{key}={value}"]
    return [*flags, image]


@pytest.mark.parametrize("which", ["image", "api_image"])
def test_g1_g3_image_runs_as_non_root_and_carries_no_credentials(which, request):
    image = request.getfixturevalue(which)
    assert docker("run", "--rm", image, "id", "-u").stdout.strip() == "10001"
    config = json.loads(docker("image", "inspect", image).stdout)[0]["Config"]
    env = " ".join(config.get("Env") or []).lower()
    assert "password" not in env and "secret" not in env and "minio123" not in env
    assert config.get("User") == "10001:10001"


def test_an_image_built_under_umask_077_is_readable_by_its_non_root_user(base_image, tmp_path):
    """docker-py's tar keeps each file's mode and COPY keeps it: a context copied under the
    caller's umask 077 gave root 0600 files that UID 10001 could not import."""
    import secrets

    import iris_services
    from irisctl.clients import docker as docker_client

    package = Path(iris_services.__file__).parent
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM {base_image}\nCOPY iris_services /app/iris_services\nUSER 10001\n")
    files = {
        "Dockerfile": dockerfile,
        "iris_services/__init__.py": package / "__init__.py",
        "iris_services/common/__init__.py": package / "common" / "__init__.py",
    }
    tag = f"irisctl-umask-test:{secrets.token_hex(4)}"
    hardened = os.umask(0o077)
    try:
        docker_client.build(docker_client.client(), files, tag, {}, lambda line: None)
    finally:
        os.umask(hardened)
    try:
        code = "import sys; sys.path.insert(0, '/app'); import iris_services.common"
        proc = docker("run", "--rm", "--network", "host", tag, "python3", "-c", code, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
    finally:
        docker("rmi", "-f", tag, check=False)


def manifest_api_workers() -> str:
    """IRIS_API_WORKERS of the model-api Deployment that `up` applies."""
    from irisctl import settings
    from irisctl.targets.kube import KubeTarget

    config = settings.load({"target": "minikube"}, recorded=None)
    api = next(
        d
        for d in KubeTarget(config, "minikube").documents()
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "model-api"
    )
    env = api["spec"]["template"]["spec"]["containers"][0]["env"]
    workers = next(e["value"] for e in env if e["name"] == "IRIS_API_WORKERS")
    assert int(workers) > 1  # the case that broke: several workers under PID 1
    return str(workers)


def test_the_model_api_image_holds_neither_mlflow_nor_sklearn(api_image):
    for module in ("mlflow", "sklearn", "pandas"):
        proc = docker("run", "--rm", api_image, "python", "-c", f"import {module}", check=False)
        assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr
    proc = docker("run", "--rm", api_image, "python", "-c", "import onnxruntime, uvloop, httpx")
    assert proc.returncode == 0


def test_model_api_container_serves_the_champion(api_image, service_env):
    publish.run(TrainerSettings())
    port = free_port()
    env = {
        **{k: v for k, v in service_env.items() if k != "IRIS_SEED"},
        "PORT": str(port),
        "HOST": "127.0.0.1",
        # As many workers as the manifests run, without an init: uvicorn's parent is PID 1.
        "IRIS_API_WORKERS": manifest_api_workers(),
    }
    cid = docker(
        "run", "-d", "--rm", *run_args(api_image, env), "python", "-m", "iris_services.api"
    ).stdout.strip()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _ready(url), 120, 0.5, "the API container to load the champion")
        body = httpx.post(f"{url}/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}).json()
        assert body["prediction"] == "setosa" and body["model"]["version"] == "1"
        assert len(httpx.get(f"{url}/model").json()["graph_sha256"]) == 64
        # The pages for people ship in the image too: offline docs' assets, the runbooks.
        assert httpx.get(f"{url}/docs-assets/swagger-ui-bundle.js").status_code == 200
        assert 'id="runbook-irismodelstale"' in httpx.get(f"{url}/runbooks").text
    finally:
        docker("rm", "-f", cid, check=False)


def test_trainer_container_trains_and_promotes(image, service_env, mlflow_server):
    env = {**service_env, "HOME": "/tmp", "MPLCONFIGDIR": "/tmp/matplotlib"}
    proc = docker(
        "run",
        "--rm",
        *run_args(image, env),
        "python",
        "-m",
        "iris_services.train",
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert '"event": "training.summary"' in proc.stdout
    client = MlflowClient(mlflow_server.url)
    assert (
        client.get_model_version_by_alias(service_env["IRIS_MODEL_NAME"], "champion").version == "1"
    )


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
