"""The local target: every service as a process on this machine, under supervisord.

MLflow keeps a sqlite backend and an artifact directory under ``IRISCTL_HOME/data``; Prometheus
is the system binary with its own config and data directory. Every service binds 127.0.0.1 and
runs in its own process group, which supervisord stops as a whole (RELIABILITY.md E4).

Modules: ``layout`` (where things live), ``programs`` (the supervisord program table),
``files`` (what ``up`` renders and writes), ``logs``, ``mlflow_db`` (the sqlite schema's
upgrade), composed by ``target``.
"""

from .target import LocalTarget

__all__ = ["LocalTarget"]
