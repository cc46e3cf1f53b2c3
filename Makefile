# The one-word dev loop. `make up` runs the stack; `make test` is what CI runs.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: up test lint system-deps bench bench-batch bench-profile bench-resources soak clean

$(BIN)/irisctl: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	$(BIN)/pip check
	touch $@

# Prometheus and Alertmanager (promtool, amtool) from the system packages: optional for `up`,
# needed by the tests.
system-deps:
	@command -v promtool >/dev/null && command -v amtool >/dev/null || ./scripts/install-system-deps

# The quick start's target is the local one, even where minikube is installed. Alerts included:
# Prometheus and Alertmanager are installed first where that needs no password; elsewhere `up`
# goes on without them and says the one command that adds them.
up: $(BIN)/irisctl
	@./scripts/install-system-deps --for-up
	$(BIN)/irisctl --target local up

lint: $(BIN)/irisctl
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy irisctl services/iris_services

test: system-deps lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The benchmark (bench/run.py): our model API against `mlflow models serve`, CLI timings.
bench: $(BIN)/irisctl
	@command -v wrk >/dev/null || ./scripts/install-system-deps wrk
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Batch scoring of a 1,000,000-row file (bench/batch.py): in-process, the CLI, mlflow models serve.
bench-batch: $(BIN)/irisctl
	$(BIN)/python bench/batch.py $(BENCH_ARGS)

# Where a one-row /predict spends its time, in µs, in one process (bench/profile_predict.py).
bench-profile: $(BIN)/irisctl
	$(BIN)/python bench/profile_predict.py $(BENCH_ARGS)

# Each service's memory, steady, under load and in a training (bench/resources.py), against the
# Kubernetes requests and limits (the README's table).
bench-resources: $(BIN)/irisctl
	$(BIN)/python bench/resources.py $(BENCH_ARGS)

# The soak check (bench/soak.py): predictions under load while trainings promote new champions.
soak: $(BIN)/irisctl
	$(BIN)/python bench/soak.py $(SOAK_ARGS)
