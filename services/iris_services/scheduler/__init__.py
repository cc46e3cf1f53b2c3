"""The local target's training schedule: the CronJob's cron expression, run under supervisord."""
