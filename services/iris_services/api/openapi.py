"""The OpenAPI text of the model API's routes that FastAPI cannot derive from a signature: the
``/predict`` body (JSON, one row or a batch) and each route's documented answers.

Functions, not constants: FastAPI keeps references to the dicts it is given, so each app gets
its own.
"""

from __future__ import annotations

from typing import Any

from . import schemas

Responses = dict[int | str, dict[str, Any]]


def _error(description: str) -> dict[str, Any]:
    """An answer whose body is ``{"detail": "..."}``."""
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"detail": {"type": "string"}},
                    "required": ["detail"],
                }
            }
        },
    }


def predict_body() -> dict[str, Any]:
    """``/predict``'s request body: one row (``features``) or a batch (``instances``)."""
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        schemas.PredictOne.model_json_schema(),
                        schemas.PredictBatch.model_json_schema(),
                    ]
                }
            }
        },
    }


def not_ready() -> Responses:
    """The 503 of a worker without a model (``/predict``, ``/readyz``)."""
    return {503: _error("No model loaded yet: run `irisctl train --now`")}


def predict_responses() -> Responses:
    """``/predict``'s answers: the prediction, and each way a request is refused."""
    return {
        200: {
            "description": "One prediction (`features`), or one per row (`instances`)",
            "model": schemas.PredictOneAnswer | schemas.PredictBatchAnswer,
        },
        413: _error("Body over the size limit, or a batch over the row limit"),
        422: _error("Not valid input: the message says what is wrong"),
        415: _error("Content-Type is not `application/json`"),
        **not_ready(),
    }


def metrics_responses() -> Responses:
    """``/metrics`` answers Prometheus's text format."""
    return {200: {"content": {"text/plain": {"schema": {"type": "string"}}}}}


def feedback_body() -> dict[str, Any]:
    """``/feedback``'s request body."""
    return {
        "required": True,
        "content": {"application/json": {"schema": schemas.FeedbackRequest.model_json_schema()}},
    }


def feedback_responses() -> Responses:
    """``/feedback``'s answers."""
    return {
        200: {"description": "What became of each label", "model": schemas.FeedbackAnswer},
        413: _error("Body over 2,000,000 bytes, or more than 10,000 labels"),
        415: _error("Content-Type is not `application/json`"),
        422: _error("Not valid input, or a label that is not a class name"),
    }
