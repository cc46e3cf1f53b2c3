"""The trainer: a run-to-completion program (the CronJob, the local scheduler, ``train --now``)."""
