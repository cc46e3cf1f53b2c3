"""Code shared by every service: settings, logging, MLflow access."""
