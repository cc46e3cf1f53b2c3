# The slim model-API image: FastAPI + onnxruntime serving the champion's ONNX graph, fetched over
# MLflow's REST API (no MLflow, no scikit-learn inside). Build it with `irisctl build`; tests pass
# --build-arg BASE_IMAGE=<a local base>. The trainer, monitor and MLflow use the full image.
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=true

# A venv: Debian's system pip refuses installs (PEP 668). Then drop what the API never runs:
# pip itself, onnxruntime's model-conversion tools, numpy's build tools and test suites.
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv && pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt \
    && pip uninstall -y -q pip setuptools \
    && cd /opt/venv/lib/python3*/site-packages \
    && rm -rf onnxruntime/transformers onnxruntime/quantization onnxruntime/tools \
        numpy/f2py numpy/distutils numpy/_pyinstaller numpy/*/tests numpy/tests \
    && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

COPY iris_services /app/iris_services

RUN (getent group iris || groupadd --gid 10001 iris) \
    && (getent passwd iris || useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp iris)
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
CMD ["python", "-m", "iris_services.api"]
