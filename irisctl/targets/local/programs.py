"""The local stack's supervisord programs: one table of what runs, with its command, environment
and restart policy (rendered into ``supervisord.conf`` by ``files.py``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from iris_services.common.signing import KEY_FILE_ENV

from ..base import seed_settings, service_settings, telemetry_settings
from .layout import Layout

TRAINER_BUSY = 75  # the trainer's exit code when another training holds the lock


@dataclass
class Program:
    """One supervisord program."""

    name: str
    command: list[str]
    env: dict[str, str]
    directory: str
    priority: int = 100
    autostart: bool = True
    autorestart: str = "true"
    startsecs: int = 3
    stopwaitsecs: int = 15
    exitcodes: str = ""


def service_env(layout: Layout) -> dict[str, str]:
    """The settings every service reads, the same names the Kubernetes ConfigMap carries."""
    return {**service_settings(layout.config, layout.endpoint("mlflow")), "HOST": "127.0.0.1"}


def programs(layout: Layout) -> list[Program]:
    """Every supervised program of the stack."""
    py = sys.executable
    ports = layout.config.ports
    env = service_env(layout)
    home = str(layout.home)
    programs = [
        Program(
            "mlflow",
            [
                py,
                "-m",
                # `mlflow server` minus the AI Gateway and the Assistant (README, Security)
                "iris_services.mlflow_server",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports["mlflow"]),
                "--workers",
                "1",
                "--serve-artifacts",
                "--artifacts-destination",
                str(layout.data_dir / "artifacts"),
            ],
            # Lean MLflow (RELIABILITY.md H2): one worker, no job consumers.
            {
                "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{layout.data_dir / 'mlflow.db'}",
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                "MLFLOW_ENABLE_AI_GATEWAY": "false",
                "PYTHONUNBUFFERED": "1",
                **telemetry_settings(layout.config),
            },
            home,
            priority=10,
            startsecs=5,
            stopwaitsecs=20,
        ),
        Program(
            "model-api",
            [py, "-m", "iris_services.api"],
            {
                **env,
                "PORT": str(ports["api"]),
                "IRIS_API_WORKERS": str(layout.config["api_workers"]),
                # the workers share one download of each graph (<sha256>.onnx) here
                "IRIS_MODEL_CACHE_DIR": str(layout.run_dir / "model-api"),
                # the workers share the labels not yet stored here; it outlives a restart
                "IRIS_FEEDBACK_SPOOL_DIR": str(layout.feedback_spool_dir),
                # only the trainer and the API hold the key; MLflow never does
                KEY_FILE_ENV: str(layout.signing_key_file),
            },
            home,
            priority=20,
        ),
        Program(
            "monitor",
            [py, "-m", "iris_services.monitor"],
            {**env, "PORT": str(ports["monitor"])},
            home,
            priority=20,
        ),
        Program(
            "trainer",
            [py, "-m", "iris_services.train"],
            {
                **env,
                "IRIS_TRAIN_LOCK": str(layout.run_dir / "train.lock"),
                KEY_FILE_ENV: str(layout.signing_key_file),
                **seed_settings(layout.config),
            },
            home,
            priority=30,
            autostart=False,
            autorestart="false",
            startsecs=0,
            exitcodes=f"0,{TRAINER_BUSY}",
        ),
        Program(
            "scheduler",
            [py, "-m", "iris_services.scheduler"],
            {
                "IRIS_TRAIN_SCHEDULE": layout.config["train_schedule"],
                "PYTHONUNBUFFERED": "1",
                **telemetry_settings(layout.config),
            },
            home,
            priority=40,
        ),
    ]
    if layout.prometheus_bin:
        programs.append(
            Program(
                "prometheus",
                [
                    layout.prometheus_bin,
                    f"--config.file={layout.run_dir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={layout.data_dir / 'prometheus'}",
                    "--storage.tsdb.retention.size=512MB",
                    f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
                    # The address irisctl prints, in alerts' generatorURL (not the hostname).
                    f"--web.external-url={layout.endpoint('prometheus')}/",
                ],
                {},
                home,
                priority=15,
            )
        )
    if layout.prometheus_bin and layout.alertmanager_bin:
        programs.append(
            Program(
                "alertmanager",
                [
                    layout.alertmanager_bin,
                    f"--config.file={layout.run_dir / 'alertmanager.yml'}",
                    f"--storage.path={layout.data_dir / 'alertmanager'}",
                    f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
                    "--cluster.listen-address=",  # no gossip port: a single local instance
                ],
                {},
                home,
                priority=15,
            )
        )
    return programs
