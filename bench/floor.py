"""The HTTP floor: the model API's server stack (FastAPI, uvicorn, uvloop, httptools, orjson)
with a /predict that reads the body and answers a constant, doing no model work. No server on
this stack can beat it; bench/run.py reports the API's one-row throughput as a share of it."""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

app = FastAPI()
ANSWER = orjson.dumps({"prediction": "setosa", "class_index": 0})


@app.post("/predict")
async def predict(request: Request) -> Response:
    await request.body()
    return Response(ANSWER, media_type="application/json")
