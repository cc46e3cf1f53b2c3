"""The monitor: reads the MLflow registry on an interval and exports gauges to Prometheus."""
