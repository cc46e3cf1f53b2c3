"""A Docker Engine API stand-in that the real docker SDK (docker-py) reaches over HTTP, for a
pushing engine this machine does not have (no registry can be reached or pulled here).

It answers what ``irisctl.clients.docker`` asks of an engine that builds here and pushes to a
registry, worded as the engine words it (https://docs.docker.com/reference/api/engine/):

- ``GET /_ping`` → ``OK``, ``GET /version`` → ``ApiVersion`` (docker-py's ``from_env()`` asks
  for the version, ``client()`` pings).
- ``GET /images/{name}/json`` (ImageInspect): the image when ``name`` is in ``images``, else 404
  ``{"message": "No such image: NAME"}`` (moby ``daemon/images/image.go`` ErrImageDoesNotExist).
- ``POST /images/{name}/push?tag=T`` (ImagePush): 404 for an image the engine does not have;
  otherwise 200 and a stream of JSON messages (moby ``pkg/jsonmessage`` JSONMessage: ``status``,
  ``id``, ``progress``, ``progressDetail``, ``aux``), one per chunk of a chunked response (the
  engine flushes each: docker-py's ``_stream_helper`` reads a response that is not chunked as
  one JSON document), as ``distribution/push_v2.go`` writes them:
  "The push refers to repository [NAME]", per layer Preparing/Pushing/Pushed, then
  "TAG: digest: sha256:… size: N" and the ``aux`` PushResult. A refusing registry
  (``deny``) ends the stream with ``{"errorDetail": {"message": M}, "error": M}`` after the
  first message (still HTTP 200: the engine has started streaming), M being the registry's
  words, ``denied: requested access to the resource is denied`` (distribution's
  ``registry/api/errcode`` DENIED).

Every request is recorded in ``requests`` as (method, path?query, X-Registry-Auth or "").
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

DENIED = "denied: requested access to the resource is denied"
_IMAGE = re.compile(r"^(?:/v[\d.]+)?/images/(?P<name>.+)/(?P<op>json|push)$")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    engine: DockerApi

    def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Api-Version", "1.45")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> tuple[str, dict[str, list[str]]]:
        self.engine.requests.append(
            (self.command, self.path, self.headers.get("X-Registry-Auth", ""))
        )
        url = urlsplit(self.path)
        return unquote(url.path), parse_qs(url.query)

    def do_GET(self) -> None:
        path, _ = self._record()
        if path.endswith("/_ping"):
            self._send(200, "OK", "text/plain")
        elif path.endswith("/version"):
            self._send(200, {"ApiVersion": "1.45", "Version": "26.1.5", "MinAPIVersion": "1.24"})
        elif (m := _IMAGE.match(path)) and m["op"] == "json":
            name = m["name"]
            if name in self.engine.images:
                digest = hashlib.sha256(name.encode()).hexdigest()
                self._send(200, {"Id": f"sha256:{digest}", "RepoTags": [name], "Size": 2**20})
            else:
                self._send(404, {"message": f"No such image: {name}"})
        else:
            self._send(404, {"message": "page not found"})

    def do_POST(self) -> None:
        path, query = self._record()
        if int(self.headers.get("Content-Length") or 0):
            self.rfile.read(int(self.headers["Content-Length"]))
        m = _IMAGE.match(path)
        if not m or m["op"] != "push":
            self._send(404, {"message": "page not found"})
            return
        repository, tag = m["name"], query.get("tag", ["latest"])[0]
        if f"{repository}:{tag}" not in self.engine.images:
            self._send(404, {"message": f"No such image: {repository}:{tag}"})
            return
        self.engine.pushes.append((repository, tag))
        layer = hashlib.sha256(repository.encode()).hexdigest()[:12]
        messages: list[dict[str, Any]] = [
            {"status": f"The push refers to repository [{repository}]"},
            {"status": "Preparing", "progressDetail": {}, "id": layer},
        ]
        if self.engine.deny:
            messages.append({"errorDetail": {"message": DENIED}, "error": DENIED})
        else:
            digest = "sha256:" + hashlib.sha256(f"{repository}:{tag}".encode()).hexdigest()
            messages += [
                {
                    "status": "Pushing",
                    "progressDetail": {"current": 512, "total": 1024},
                    "progress": "[=========================>                         ]",
                    "id": layer,
                },
                {"status": "Pushed", "progressDetail": {}, "id": layer},
                {"status": f"{tag}: digest: {digest} size: 1234"},
                {"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest, "Size": 1234}},
            ]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Api-Version", "1.45")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for msg in messages:
            data = (json.dumps(msg) + "\r\n").encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that drops its kept-alive connection is no error of the engine's


class DockerApi:
    """The stand-in on a free 127.0.0.1 port; ``images`` are the tags the engine has."""

    def __init__(self) -> None:
        self.images: set[str] = set()
        self.deny = False
        self.pushes: list[tuple[str, str]] = []
        self.requests: list[tuple[str, str, str]] = []
        handler = type("Handler", (_Handler,), {"engine": self})
        self.server = _Server(("127.0.0.1", 0), handler)
        self.host = f"tcp://127.0.0.1:{self.server.server_address[1]}"
        # shutdown() waits for the next poll: 0.5 s by default, in every test's teardown
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
