"""A stand-in for the model API's prediction ids and ``POST /feedback`` (issue 21), served over
real HTTP (uvicorn, as test_predict_file serves the real app), for the CLI's tests.

It answers as the contract says (/tmp/notes' feedback contract, DESIGN.md): every prediction
carries an opaque ``id`` (URL-safe base64, 80 characters); the CSV answer's header is
``prediction,setosa,versicolor,virginica,warnings,id``; ``/feedback`` takes 1..10,000 labels in
at most 2,000,000 bytes and answers ``{"accepted", "duplicates", "unknown"}``, 422 for a label
that is not a class name or a malformed body, 413 over the limits. Its predictions are not a
model's: a negative value gets a warning, every row is ``setosa``.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response

from iris_services.common.names import CLASS_NAMES
from irisctl import state, targets
from tests.services.test_api import LiveServer

PROBABILITIES = {"setosa": 0.98, "versicolor": 0.015, "virginica": 0.005}
MAX_LABELS = 10_000
MAX_BODY = 2_000_000


def new_id(row: str) -> str:
    """80 characters of URL-safe base64 that say which row they were issued for (``row_of``)."""
    return base64.urlsafe_b64encode(f"{row}#{os.urandom(8).hex()}#".encode().ljust(60)).decode()


def row_of(id_: str) -> str:
    return base64.urlsafe_b64decode(id_).decode().split("#")[0]


class StandIn:
    """The app and what it saw: ids issued, labels stored, each /feedback request's size."""

    def __init__(self, with_ids: bool = True, version: str = "3") -> None:
        self.with_ids = with_ids  # False: an API from before ids (no `id` anywhere)
        self.version = version
        self.issued: list[str] = []
        self.labels: dict[str, str] = {}
        self.requests: list[tuple[int, int]] = []  # (labels, body bytes) of each /feedback
        self.fail_next: list[int] = []  # statuses the next /feedback requests answer with
        self.max_labels = MAX_LABELS
        self.lock = threading.Lock()
        self.app = self._app()

    def _issue(self, row: str) -> dict[str, str]:
        if not self.with_ids:
            return {}
        with self.lock:
            self.issued.append(new_id(row))
            return {"id": self.issued[-1]}

    def _one(self, features: list[float], row: str = "") -> dict[str, Any]:
        answer: dict[str, Any] = {
            "prediction": "setosa",
            "class_index": 0,
            "probabilities": PROBABILITIES,
        }
        if any(v < 0 for v in features):
            answer["warnings"] = [f"a value {min(features)} is negative, no width can be"]
        return {**answer, **self._issue(row or ",".join(map(str, features)))}

    def _app(self) -> FastAPI:
        app = FastAPI()
        model = {"name": "iris-classifier", "version": self.version}

        @app.post("/predict")
        async def predict(request: Request) -> Response:
            body = await request.body()
            if request.headers.get("content-type", "").startswith("text/csv"):
                header = "prediction," + ",".join(CLASS_NAMES) + ",warnings"
                lines = [header + (",id" if self.with_ids else "")]
                for line in body.decode().strip().split("\n"):
                    one = self._one([float(c) for c in line.split(",")], line)
                    # A warning with a comma is quoted, as csv.writer does.
                    warning = f'"{one["warnings"][0]}"' if "warnings" in one else ""
                    cells = ["setosa", *map(repr, PROBABILITIES.values()), warning]
                    lines.append(",".join(cells + ([one["id"]] if self.with_ids else [])))
                return Response(
                    "\n".join(lines) + "\n",
                    media_type="text/csv",
                    headers={"X-Model-Version": self.version},
                )
            data = json.loads(body)
            if "features" in data:
                return _json(200, {**self._one(data["features"]), "model": model})
            predictions = [self._one(row) for row in data["instances"]]
            return _json(200, {"predictions": predictions, "model": model})

        @app.post("/feedback")
        async def feedback(request: Request) -> Response:
            body = await request.body()
            if self.fail_next:
                return _json(self.fail_next.pop(0), {"detail": "a worker is restarting"})
            if len(body) > MAX_BODY:
                return _json(413, {"detail": f"request body is larger than {MAX_BODY} bytes"})
            try:
                labels = json.loads(body)["labels"]
                assert isinstance(labels, list) and labels
                pairs = [(str(item["id"]), str(item["label"])) for item in labels]
            except (ValueError, KeyError, TypeError, AssertionError):
                return _json(422, {"detail": "the body is {'labels': [{'id', 'label'}, ...]}"})
            if len(pairs) > self.max_labels:
                return _json(413, {"detail": f"at most {self.max_labels} labels a request"})
            for n, (_, label) in enumerate(pairs):
                if label not in CLASS_NAMES:
                    return _json(
                        422,
                        {
                            "detail": f"labels[{n}].label: {label!r} is not one of "
                            + ", ".join(CLASS_NAMES)
                        },
                    )
            accepted, duplicates, unknown = 0, [], []
            with self.lock:
                self.requests.append((len(pairs), len(body)))
                issued = set(self.issued)
                for id_, label in pairs:
                    if id_ not in issued:
                        unknown.append(id_)
                    elif id_ in self.labels:
                        duplicates.append(id_)
                    else:
                        self.labels[id_] = label
                        accepted += 1
            return _json(200, {"accepted": accepted, "duplicates": duplicates, "unknown": unknown})

        return app


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status_code=status, media_type="application/json")


@contextmanager
def as_the_stacks_api(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server: LiveServer
) -> Iterator[str]:
    """``server`` over HTTP as the running stack's model API: a home whose state says "up" and
    a target whose endpoint is the server's URL (yielded)."""
    monkeypatch.setenv("IRISCTL_HOME", str(tmp_path / "home"))
    with server as url:

        class Target:
            def endpoint(self, service: str) -> str:
                return url

        monkeypatch.setattr(targets, "choose", lambda config, recorded: (Target(), "test"))
        state.write(tmp_path / "home", {"target": "local", "up": True, "ports": {}})
        yield url


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[StandIn]:
    """The stand-in over HTTP as the running stack's model API."""
    served = StandIn()
    with as_the_stacks_api(monkeypatch, tmp_path, LiveServer(served.app)) as url:
        served.url = url  # type: ignore[attr-defined]
        yield served
