"""The irisctl services: the trainer, the model API, the monitor and the local scheduler.

The same code runs as local processes (``python -m iris_services.api``) and inside the
container images; every setting comes from the environment (see ``common.settings``).
"""
