"""Training on Kubernetes: a Job from the CronJob's template, followed to its end."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Collection
from typing import Any

from ...clients.kube import Cluster
from ...errors import IrisctlError, NotUp
from ..base import ServiceState, TrainerLog, TrainOutcome, training_busy
from . import rollout
from .objects import job_active, name, newest_first

CRONJOB = "ml-model-training"
TRAINER_SELECTOR = "app.kubernetes.io/name=trainer"


def train(
    cluster: Cluster,
    on_line: Callable[[str], None],
    attach: bool,
    timeout_s: float,
    poll_s: float,
) -> TrainOutcome:
    """A Job from the CronJob's template (``kubectl create job --from=``), followed to its end.

    ``concurrencyPolicy: Forbid`` covers only the CronJob's own Jobs, so any active training
    Job, scheduled or manual, makes this refuse (or, with ``attach``, follow it).
    """
    active = [j for j in cluster.find("batch/v1", "Job", TRAINER_SELECTOR) if job_active(j)]
    if active and not attach:
        raise training_busy(f"job {name(active[0])}")
    job = name(active[0]) if active else create_job(cluster)
    # Every pod the Job makes, in turn: a retry (an evicted or OOM-killed pod) is followed too,
    # and the summary is the one of the pod that ran last, not of the first that failed.
    said = TrainerLog()
    followed: set[str] = set()
    while (pod := wait_pod(cluster, job, on_line, timeout_s, poll_s, followed)) is not None:
        if followed:
            on_line(f"job {job}: the Job retries in pod {pod}")
        followed.add(pod)
        said = TrainerLog()
        for line in cluster.follow_log(pod):
            said.read(line)
            on_line(line)
    finished = wait_job(cluster, job, timeout_s + 900, poll_s)
    status = finished.get("status") or {}
    if status.get("succeeded"):
        return TrainOutcome(0, said.summary, None)
    code = exit_code(cluster, job)
    reason = next(
        (
            c.get("message") or c.get("reason")
            for c in status.get("conditions") or []
            if c.get("type") == "Failed"
        ),
        None,
    )
    return TrainOutcome(code or 1, said.summary, said.error or reason or f"job {job} failed")


def cancel(cluster: Cluster) -> list[str]:
    """Delete every active training Job, its pods first (Foreground), so none finishes."""
    return [
        f"deleted job {name(job)}"
        for job in cluster.find("batch/v1", "Job", TRAINER_SELECTOR)
        if job_active(job) and cluster.delete("batch/v1", "Job", name(job), "Foreground")
    ]


def create_job(cluster: Cluster) -> str:
    """A Job from the CronJob's jobTemplate, owned by the CronJob; its name."""
    cron = cluster.get("batch/v1", "CronJob", CRONJOB)
    if cron is None:
        raise NotUp(f"no CronJob {CRONJOB} in namespace {cluster.namespace}")
    template = cron["spec"]["jobTemplate"]
    # The time for people, a random suffix so two trainings in one second do not collide (409).
    job = f"{CRONJOB}-manual-{int(time.time())}-{secrets.token_hex(2)}"
    cluster.create(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": job,
                "namespace": cluster.namespace,
                "labels": (template.get("metadata") or {}).get("labels") or {},
                "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "CronJob",
                        "name": CRONJOB,
                        "uid": cron["metadata"]["uid"],
                        # As `kubectl create job --from=cronjob/…` sets them.
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": template["spec"],
        }
    )
    return job


def job_pods(cluster: Cluster, job: str) -> list[dict[str, Any]]:
    return newest_first(cluster.find("v1", "Pod", f"job-name={job}"))


def wait_pod(
    cluster: Cluster,
    job: str,
    on_line: Callable[[str], None],
    timeout_s: float,
    poll_s: float,
    followed: Collection[str] = (),
) -> str | None:
    """The job's newest pod not in ``followed``, once its container has started (or ended),
    saying why it waits; None once the Job has ended without another pod."""
    deadline = time.monotonic() + timeout_s
    said = ""
    while True:
        pods = [p for p in job_pods(cluster, job) if name(p) not in followed]
        if not pods and followed:
            found = cluster.get("batch/v1", "Job", job)
            if found is None or not job_active(found):
                return None
        if pods:
            pod = pods[0]
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            if any(
                "running" in (cs.get("state") or {}) or "terminated" in (cs.get("state") or {})
                for cs in statuses
            ):
                return str(pod["metadata"]["name"])
            why = rollout.why(cluster, "trainer", pods)
            if rollout.reason(why) in rollout.STUCK:
                raise IrisctlError(f"the training pod cannot start: {why}")
        else:
            why = "waiting for its next pod" if followed else "waiting for its pod"
        if why != said:
            on_line(f"job {job}: {why}")
            said = why
        if time.monotonic() > deadline:
            raise IrisctlError(f"the training pod did not start: {why}")
        time.sleep(poll_s)


def wait_job(cluster: Cluster, job: str, timeout_s: float, poll_s: float) -> dict[str, Any]:
    """The Job once it has ended (or at the deadline); a Failed stand-in if it was deleted."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = cluster.get("batch/v1", "Job", job)
        if found is None:  # deleted meanwhile (by hand, or its TTL): it will not finish
            return {
                "status": {
                    "conditions": [
                        {"type": "Failed", "status": "True", "message": f"job {job} was deleted"}
                    ]
                }
            }
        if not job_active(found) or time.monotonic() > deadline:
            return found
        time.sleep(poll_s)


def exit_code(cluster: Cluster, job: str) -> int | None:
    for pod in job_pods(cluster, job):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            ended = (cs.get("state") or {}).get("terminated")
            if ended:
                return int(ended.get("exitCode", 1))
    return None


def trainer_state(cluster: Cluster) -> ServiceState:
    """The CronJob's schedule and its newest Job, as ``status`` shows the trainer."""
    cron = cluster.get("batch/v1", "CronJob", CRONJOB)
    if cron is None:
        return ServiceState("trainer", "absent", None, detail=f"no CronJob {CRONJOB}")
    cs = cron.get("status") or {}
    jobs = newest_first(cluster.find("batch/v1", "Job", TRAINER_SELECTOR))
    detail = (
        f"schedule {cron['spec']['schedule']}; last scheduled "
        f"{cs.get('lastScheduleTime') or 'never'}, last success "
        f"{cs.get('lastSuccessfulTime') or 'never'}"
    )
    # Why scheduled runs are missing (TooManyMissedTimes, FailedCreate, InvalidSchedule, …): the
    # CronJob controller says so only in Events on the CronJob.
    warning = rollout.newest_event(cluster, cron, lambda e: e.get("type") == "Warning")
    if warning:
        detail += (
            f"; warning at {rollout.event_time(warning)}: {warning.get('reason')}: "
            f"{warning['message']}"
        )
    if not jobs:
        return ServiceState("trainer", "stopped", None, detail=detail)
    last = jobs[0]
    if job_active(last):
        return ServiceState("trainer", "running", None, detail=f"{detail}; job {name(last)}")
    outcome = "succeeded" if (last.get("status") or {}).get("succeeded") else "failed"
    return ServiceState("trainer", "exited", None, detail=f"{detail}; job {name(last)} {outcome}")
