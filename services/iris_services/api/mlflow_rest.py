"""The champion and its graph, over MLflow's REST API with httpx (the API imports no mlflow).

Three calls, each checked against the MLflow server's handlers (mlflow/server/handlers.py):

1. the champion behind the alias (``common/alias.py``, the one reader). In MLflow 3 its
   ``source`` is the logged model, ``models:/m-<id>``.
2. ``GET /api/2.0/mlflow/logged-models/m-<id>`` → ``info.artifact_uri``
   (``mlflow-artifacts:/<experiment>/models/m-<id>/artifacts`` on a server that proxies
   artifacts) and ``info.tags``, where the trainer put the graph's sha256.
3. ``GET /api/2.0/mlflow-artifacts/artifacts/<that path>/model.onnx`` → the graph.

A version is loaded only when it carries the trainer's signature of (model name, version, graph
digest) made with this stack's key (``common/signing.py``): anyone who reaches MLflow can
register a version or move the alias, but not sign.

The graph is cached as ``<sha256>.onnx`` in a directory every worker shares (the run directory
locally, an emptyDir on Kubernetes): the first worker downloads under a file lock, the others
find the file, so a promotion costs one fetch however many workers there are.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import httpx

from ..common import signing
from ..common.alias import Champion, RegistryError, read_champion
from ..common.names import DIGEST_TAG, GRAPH_FILE
from .graph import GraphModel

KEEP_GRAPHS = 3  # cached graphs kept: the current one and a couple to roll back to
# Our forests compile to well under 1 MB; anything near this is not ours, and is not read whole
# into every worker's memory.
MAX_GRAPH_BYTES = 64 * 1024 * 1024
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class Refused(RegistryError):
    """A version the API declines to serve for a reason of its own (unsigned, no graph, a tag
    that is not a digest): the message holds no internal detail, so ``/model`` shows it."""


class RestRegistry:
    """The production registry of ``model_holder.ModelHolder``: MLflow's REST API."""

    def __init__(
        self,
        tracking_uri: str,
        name: str,
        alias: str,
        cache_dir: Path,
        timeout_s: float = 10.0,
        key_file: str | None = None,
    ) -> None:
        self._http = httpx.Client(base_url=tracking_uri.rstrip("/"), timeout=timeout_s)
        self._key_file = key_file  # None: nothing can be verified, so nothing loads
        self._name = name
        self._alias = alias
        self._cache = cache_dir
        self.downloads = 0  # graphs this process fetched (the others came from the cache)
        self.max_graph_bytes = MAX_GRAPH_BYTES

    def champion(self) -> Champion | None:
        """The alias's target, or None when the model or the alias does not exist yet."""
        return read_champion(self._http, self._name, self._alias)

    def load(self, champion: Champion) -> GraphModel:
        """The champion's verified graph, from the shared cache or downloaded once; refused
        unless the version is signed with this stack's key."""
        model_id = _logged_model_id(champion)
        info = _json(
            self._http.get(f"/api/2.0/mlflow/logged-models/{quote(model_id)}"),
            f"the logged model {model_id}",
        )["model"]["info"]
        tags = {t["key"]: t.get("value") for t in info.get("tags", [])}
        digest = tags.get(DIGEST_TAG)
        if not digest:
            raise Refused(
                f"version {champion.version} has no compiled ONNX graph (trained before "
                "irisctl compiled models, or its compilation failed): run `irisctl train --now`"
            )
        try:
            key = signing.read_key_file(self._key_file) if self._key_file else None
            signing.verify_version(key, self._name, champion.version, digest, champion.signature)
        except signing.SignatureError as exc:
            raise Refused(
                f"refused: {exc}; the API serves only versions this stack's trainer registered "
                "(`irisctl train --now` makes one)"
            ) from None
        return GraphModel(self._graph(digest, artifact_path(info["artifact_uri"])), digest)

    def _graph(self, digest: str, artifact_dir: str) -> bytes:
        # The tag is anyone's to write, and it names a file below: a digest or nothing.
        if not SHA256_HEX.fullmatch(digest):
            raise Refused(f"the graph's {DIGEST_TAG} tag is not a sha256 (64 hex digits)")
        self._cache.mkdir(parents=True, exist_ok=True)
        target = self._cache / f"{digest}.onnx"
        with open(self._cache / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # siblings wait here, then read the file
            data = _read_if_valid(target, digest)
            if data is None:
                data = self._download(f"{artifact_dir}/{GRAPH_FILE}", digest)
                fd, tmp = tempfile.mkstemp(dir=self._cache, suffix=".part")
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, target)  # readers see the whole file or none
                self.downloads += 1
                _prune(self._cache, keep=KEEP_GRAPHS)
        return data

    def _download(self, artifact_path: str, digest: str) -> bytes:
        url = "/api/2.0/mlflow-artifacts/artifacts/" + quote(artifact_path.lstrip("/"))
        too_big = RegistryError(f"the graph {artifact_path} is over {self.max_graph_bytes} bytes")
        with self._http.stream("GET", url) as resp:
            if resp.status_code != 200:
                text = resp.read()[:200].decode(errors="replace")
                raise RegistryError(
                    f"downloading {artifact_path} answered HTTP {resp.status_code}: {text}"
                )
            if int(resp.headers.get("content-length") or 0) > self.max_graph_bytes:
                raise too_big
            chunks, size = [], 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > self.max_graph_bytes:
                    raise too_big
                chunks.append(chunk)
        content = b"".join(chunks)
        got = hashlib.sha256(content).hexdigest()
        if got != digest:
            raise RegistryError(f"the downloaded graph's sha256 {got} is not {digest}")
        return content

    def close(self) -> None:
        self._http.close()


def logged_model_id(source: str) -> str | None:
    """The logged model a version's ``source`` names (MLflow 3: ``models:/m-<id>``), or None."""
    if source.startswith("models:/m-"):
        return source.removeprefix("models:/").split("/", 1)[0]
    return None


def _logged_model_id(champion: Champion) -> str:
    model_id = logged_model_id(champion.source)
    if model_id is None:
        raise RegistryError(
            f"version {champion.version} points at {champion.source!r}, not a logged model "
            "(models:/m-…): run `irisctl train --now`"
        )
    return model_id


def artifact_path(artifact_uri: str) -> str:
    """The path under ``/api/2.0/mlflow-artifacts/artifacts/`` of a proxied artifact root:
    ``mlflow-artifacts:/1/models/m-x/artifacts`` (also with a host) or the server's own
    ``http(s)://…/api/2.0/mlflow-artifacts/artifacts/…`` → ``1/models/m-x/artifacts``."""
    parsed = urlparse(artifact_uri)
    anchor = "/api/2.0/mlflow-artifacts/artifacts/"
    if parsed.scheme == "mlflow-artifacts":
        return parsed.path.strip("/")
    if parsed.scheme in ("http", "https") and anchor in parsed.path:
        return parsed.path.split(anchor, 1)[1].strip("/")
    raise RegistryError(
        f"the model's artifacts are at {artifact_uri}, which the MLflow server does not "
        "proxy: start it with --serve-artifacts"
    )


def _read_if_valid(path: Path, digest: str) -> bytes | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return data if hashlib.sha256(data).hexdigest() == digest else None


def _prune(cache: Path, keep: int) -> None:
    graphs = sorted(cache.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in graphs[keep:]:
        old.unlink(missing_ok=True)


def _json(resp: httpx.Response, what: str) -> Any:
    if resp.status_code != 200:
        raise RegistryError(f"{what} answered HTTP {resp.status_code}: {resp.text[:200]}")
    return resp.json()
