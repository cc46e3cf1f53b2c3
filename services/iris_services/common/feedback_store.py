"""Labelled production rows, kept in the same store as the models: MLflow's proxied artifact
store (the local target: a directory under the data directory; Kubernetes: the artifact bucket
in MinIO), reached over MLflow's REST API with httpx (no mlflow import), by the API that writes
them and the trainer that reads them.

A batch is one object of JSON lines ``{"id", "label", "at"}``, sorted by id, at
``feedback/<registered model>/<UTC day>/<unix ms>-<random>.jsonl``: one object per flush, never
one per label.
The routes are mlflow/server/handlers.py's ``_upload_artifact`` (``PUT
/api/2.0/mlflow-artifacts/artifacts/<path>``, written to a temp file and renamed by the local
repository, one PUT on S3), ``_list_artifacts_mlflow_artifacts`` (``GET …/artifacts?path=``,
base names, an empty list for a path that does not exist) and ``_download_artifact``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from .names import FEEDBACK_ARTIFACT_DIR

_ROUTE = "/api/2.0/mlflow-artifacts/artifacts"
DAY_FORMAT = "%Y-%m-%d"


class StoreError(Exception):
    """MLflow did not store or return a batch (the message says what it answered)."""


@dataclass(frozen=True)
class Label:
    """One accepted label as stored."""

    id: str
    label: str
    at: float  # unix seconds, when the API accepted it


def day_of(ts: float) -> str:
    """The UTC day directory of a batch written at ``ts``."""
    return time.strftime(DAY_FORMAT, time.gmtime(ts))


def encode(labels: list[Label]) -> bytes:
    """A batch's bytes: the same labels give the same bytes (a replayed batch is identical)."""
    ordered = sorted(labels, key=lambda x: x.id)
    return b"".join(
        orjson.dumps({"id": x.id, "label": x.label, "at": x.at}) + b"\n" for x in ordered
    )


def decode(body: bytes) -> list[Label]:
    """A batch's labels; ValueError when it is not a whole batch (a line cut short)."""
    out = []
    for line in body.splitlines():
        if line.strip():
            row: Any = orjson.loads(line)
            out.append(Label(str(row["id"]), str(row["label"]), float(row["at"])))
    return out


class FeedbackStore:
    """Put, list and get batches through MLflow at ``base_url``."""

    def __init__(self, base_url: str, model_name: str, timeout_s: float = 10.0) -> None:
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s)
        self.root = f"{FEEDBACK_ARTIFACT_DIR}/{model_name}"

    def close(self) -> None:
        self.http.close()

    def _check(self, resp: httpx.Response, what: str) -> httpx.Response:
        if resp.status_code != 200:
            raise StoreError(f"{what} answered HTTP {resp.status_code}: {resp.text[:200]}")
        return resp

    def put(self, name: str, body: bytes) -> None:
        """Store batch ``name`` (``<day>/<file>``); the same name again replaces it."""
        path = quote(f"{self.root}/{name}")
        self._check(self.http.put(f"{_ROUTE}/{path}", content=body), f"storing {name}")

    def _list(self, path: str) -> list[dict[str, Any]]:
        resp = self._check(self.http.get(_ROUTE, params={"path": path}), f"listing {path}")
        files: list[dict[str, Any]] = resp.json().get("files", [])
        return files

    def days(self) -> list[str]:
        """The day directories that hold batches, oldest first."""
        return sorted(f["path"] for f in self._list(self.root) if f.get("is_dir"))

    def names(self, day: str) -> list[str]:
        """The batches of one day, as ``<day>/<file>``."""
        files = self._list(f"{self.root}/{day}")
        return sorted(f"{day}/{f['path']}" for f in files if not f.get("is_dir"))

    def get(self, name: str) -> bytes:
        path = quote(f"{self.root}/{name}")
        return self._check(self.http.get(f"{_ROUTE}/{path}"), f"reading {name}").content

    def everything(self) -> Iterator[tuple[str, list[Label]]]:
        """Every batch, oldest day first (the trainer's read); one that does not parse is
        skipped (stored by something other than the API)."""
        for day in self.days():
            for name in self.names(day):
                try:
                    yield name, decode(self.get(name))
                except (ValueError, KeyError, TypeError):
                    continue
