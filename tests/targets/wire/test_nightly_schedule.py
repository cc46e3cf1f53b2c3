"""The nightly training on a cluster whose clock jumps: a laptop asleep at 03:00, a minikube
stopped for months. The CronJob controller is the emulator's (apiserver.py, after kubernetes'
``pkg/controller/cronjob/cronjob_controllerv2.go`` and ``utils.go``), driven by the test's clock;
the CronJob is the one ``up`` applies, read back over the wire by the real kubernetes client."""

from __future__ import annotations

import datetime

from tests.conftest import wait_until

from .conftest import NS, target, up

CRONJOB = "ml-model-training"


def _day(emu, offset: int, hour: int, minute: int = 0) -> datetime.datetime:
    """``offset`` days on, at hour:minute UTC, where day 1's 03:00 is the first nightly run after
    the CronJob was made. Counted from its creationTimestamp, not from "today": a CronJob made at
    00:30 has that same day's 03:00 as its first run, and a test may cross midnight."""
    made = datetime.datetime.strptime(
        emu.get("CronJob", NS, CRONJOB)["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ"
    ).replace(tzinfo=datetime.UTC)
    day0 = (made - datetime.timedelta(hours=3)).replace(hour=0, minute=0, second=0)
    return day0 + datetime.timedelta(days=offset, hours=hour, minutes=minute)


def _training_jobs(emu) -> list[str]:
    owned = [
        j
        for j in emu.list("Job", NS)
        if any(r.get("name") == CRONJOB for r in j["metadata"].get("ownerReferences") or [])
    ]
    return sorted(j["metadata"]["name"] for j in owned)


def _settled(emu) -> bool:
    """The CronJob's Jobs have all finished (the emulator's Job controller ran their pods)."""
    jobs = [emu.get("Job", NS, name) for name in _training_jobs(emu)]
    return all(
        any(c["type"] == "Complete" for c in (j.get("status") or {}).get("conditions") or [])
        for j in jobs
    )


def test_a_nightly_run_missed_while_the_laptop_slept_starts_when_it_wakes(site):
    """Asleep from before 03:00 until 08:00: the controller wakes 5 h late and must still start
    the run. With ``startingDeadlineSeconds: 3600`` it considered only the last hour and started
    nothing, silently, every day the laptop slept through 03:00."""
    up(target())
    emu = site.emu
    emu.cronjob_sync(_day(emu, 1, 2, 59))
    assert _training_jobs(emu) == []  # not yet due
    emu.cronjob_sync(_day(emu, 1, 3, 0))  # awake at 03:00: on time
    assert len(_training_jobs(emu)) == 1
    wait_until(lambda: _settled(emu), 10, 0.05, "the first nightly Job to complete")

    emu.cronjob_sync(_day(emu, 2, 8, 0))  # asleep through the next 03:00, awake at 08:00
    jobs = _training_jobs(emu)
    assert len(jobs) == 2, "the run missed while asleep did not start on waking"
    scheduled = emu.get("Job", NS, jobs[-1])["metadata"]["annotations"]
    assert scheduled["batch.kubernetes.io/cronjob-scheduled-timestamp"] == (
        _day(emu, 2, 3).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    wait_until(lambda: _settled(emu), 10, 0.05, "the catch-up Job to complete")
    emu.cronjob_sync(_day(emu, 2, 8, 5))
    assert len(_training_jobs(emu)) == 2  # one catch-up run, not one per sync


def test_a_week_asleep_starts_one_catch_up_run_not_seven(site):
    up(target())
    emu = site.emu
    emu.cronjob_sync(_day(emu, 1, 3, 0))
    wait_until(lambda: _settled(emu), 10, 0.05, "the first nightly Job to complete")
    emu.cronjob_sync(_day(emu, 8, 9, 0))
    assert len(_training_jobs(emu)) == 2


def test_status_shows_the_cronjobs_last_warning(site):
    """A cluster stopped for more than 100 schedules: the controller records a Warning Event
    ``TooManyMissedTimes`` on the CronJob (and still starts the newest run); ``status`` shows
    the CronJob's newest Warning, the one place a user would learn why runs went missing."""
    up(target())
    emu = site.emu
    emu.cronjob_sync(_day(emu, 1, 3, 0))
    wait_until(lambda: _settled(emu), 10, 0.05, "the first nightly Job to complete")
    emu.cronjob_sync(_day(emu, 130, 12, 0))
    trainer = next(s for s in target().services() if s.name == "trainer")
    assert "TooManyMissedTimes" in (trainer.detail or ""), trainer.detail
    assert "too many missed start times" in (trainer.detail or "")
