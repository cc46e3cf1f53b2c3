"""``POST /predict`` with a JSON body, answered in front of FastAPI: the request path's hot path.

A one-row prediction is ~10 µs of onnxruntime; FastAPI's routing, its Request and Response
objects and a metrics middleware around them cost several times that (README, "Performance",
the breakdown from ``bench/profile_predict.py``). This ASGI middleware answers what the route
would answer with 200 — the same body, byte for byte, and the same headers — and counts it in
the same metrics. Anything else (another media type, a body over the limit or that does not
parse, no model yet, an error) goes on to the route with the messages read so far replayed, so
every 413/415/422/503 answer and its metrics stay the route's (``app.py``).
"""

from __future__ import annotations

import time

import numpy as np
import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..common.feedback_ids import Ids
from ..common.settings import ApiSettings
from . import schemas
from .answers import answer, answer_one
from .drift import DriftMonitor
from .metrics import Metrics
from .model_holder import ModelHolder

_JSON = b"application/json"


class PredictFastPath:
    """The hot path of ``/predict`` (see the module's docstring); the rest goes to ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        settings: ApiSettings,
        holder: ModelHolder,
        drift: DriftMonitor,
        metrics: Metrics,
        ids: Ids,
    ) -> None:
        self.app = app
        self.ids = ids
        self.limit = settings.max_body_bytes
        self.max_rows = settings.max_batch_rows
        self.holder = holder
        self.drift = drift
        self.ok = metrics.requests.labels("200")  # the child, looked up once
        self.failed = metrics.requests.labels("500")
        self.duration = metrics.duration

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/predict" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        media, declared = _content(scope["headers"])
        if media != _JSON or (declared is not None and declared > self.limit):
            await self.app(scope, receive, send)
            return
        read: list[Message] = []
        body = b""
        while True:
            message = await receive()
            read.append(message)
            if message["type"] != "http.request":  # a disconnect: the route's to handle
                break
            body += message.get("body", b"")
            if len(body) > self.limit or not message.get("more_body", False):
                break
        loaded = self.holder.current
        parsed = None
        whole = read[-1]["type"] == "http.request" and not read[-1].get("more_body", False)
        if whole and loaded is not None and len(body) <= self.limit:
            try:
                parsed = schemas.parse(body, self.max_rows)
            except schemas.BadInput:  # TooManyRows too: the route words the answer
                parsed = None
        if parsed is None or loaded is None:
            await self.app(scope, _Replay(read, receive), send)
            return
        try:
            model = {"name": loaded.champion.name, "version": loaded.champion.version}
            if isinstance(parsed, schemas.PredictOne):
                one = answer_one(loaded, parsed.features, self.drift, self.ids)
                one["model"] = model
                payload = orjson.dumps(one)
            else:
                rows = answer(loaded, np.array(parsed.instances), self.drift, self.ids)
                payload = orjson.dumps({"predictions": rows, "model": model})
        except BaseException:
            self.failed.inc()  # the route's middleware would count the 500 the server sends
            self.duration.observe(time.perf_counter() - start)
            raise
        # Starlette's Response sends these two headers, in this order.
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(payload)).encode()),
                    (b"content-type", _JSON),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        self.ok.inc()
        self.duration.observe(time.perf_counter() - start)


def _content(headers: list[tuple[bytes, bytes]]) -> tuple[bytes, int | None]:
    """The request's media type (lower case, no parameters) and its declared length."""
    media, declared = None, None
    for name, value in headers:
        name = name.lower()
        if name == b"content-type" and media is None:  # the first, as Starlette's headers.get
            media = value.split(b";", 1)[0].strip().lower()
        elif name == b"content-length" and declared is None and value.isdigit():
            declared = int(value)
    return media or b"", declared


class _Replay:
    """A ``receive`` that gives back the messages already read, then reads on."""

    def __init__(self, read: list[Message], receive: Receive) -> None:
        self.read = list(read)
        self.receive = receive

    async def __call__(self) -> Message:
        if self.read:
            return self.read.pop(0)
        return await self.receive()
