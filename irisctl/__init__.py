"""irisctl: a local MLOps toolkit for an Iris classifier (train, track, serve, monitor, alert)."""

__version__ = "0.1.0"
