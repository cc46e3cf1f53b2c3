"""`train --now` against the emulator's Job controller (apiserver.py: backoffLimit and
podFailurePolicy after kubernetes' pkg/controller/job/pod_failure_policy.go): a failure the
trainer itself decided is not run again, and a retried pod is followed to its end."""

from __future__ import annotations

import json

from .conftest import NS, target, up

SUMMARY = {"event": "training.summary", "run_id": "r2", "accuracy": 0.97, "registered": "2"}


def _pods_of_manual_jobs(emu) -> list[dict]:
    return [
        p
        for p in emu.list("Pod", NS, "app.kubernetes.io/name=trainer")
        if "-manual-" in p["metadata"]["labels"].get("job-name", "")
    ]


def test_a_failed_training_runs_once_not_three_times(site):
    """MLflow unreachable: the trainer exits 1. With only backoffLimit 2 the Job made two more
    pods, three FAILED runs in MLflow for one `train --now`."""
    up(target())
    failure = json.dumps({"event": "training.failed", "error": "MLflow is unreachable"})
    site.emu.job_outcome = lambda job, pod: (1, [failure])
    lines: list[str] = []
    outcome = target().train(lines.append)
    assert outcome.exit_code == 1 and outcome.error == "MLflow is unreachable"
    assert len(_pods_of_manual_jobs(site.emu)) == 1
    job = next(j for j in site.emu.list("Job", NS) if "-manual-" in j["metadata"]["name"])
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "PodFailurePolicy"


def test_a_retried_training_is_followed_and_summarised_from_the_pod_that_finished(site):
    """The first pod is OOM-killed (137, retried); the second trains. The summary came from the
    first pod's log (none), and the second pod's log was never shown."""
    up(target())
    attempts: list[str] = []

    def outcome(job: str, pod: dict) -> tuple[int, list[str]]:
        attempts.append(pod["metadata"]["name"])
        if len(attempts) == 1:
            return 137, ["loading the data"]
        return 0, ["training", json.dumps(SUMMARY)]

    site.emu.job_outcome = outcome
    lines: list[str] = []
    result = target().train(lines.append)
    assert len(attempts) == 2
    assert result.exit_code == 0 and result.summary == SUMMARY, lines
    assert "training" in lines and any(f"retries in pod {attempts[1]}" in ln for ln in lines)
