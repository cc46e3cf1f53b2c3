"""A1-A6 by fuzzing: schemathesis generates requests, valid and invalid, from the API's own
OpenAPI schema and sends them to the app (in process, ASGI); no answer may be a 5xx, and every
answer must match the status codes and shapes the schema documents.

Bounded for CI: a fixed number of examples per operation, derandomized so a failure repeats.
"""

from __future__ import annotations

import time

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from iris_services.api.app import create_app
from iris_services.api.model_holder import ModelHolder
from iris_services.common.alias import Champion
from iris_services.common.settings import ApiSettings
from iris_services.train import pipeline


class _OneModel:
    """A registry fake at our seam with one real scikit-learn champion."""

    def __init__(self) -> None:
        self.model = pipeline.train(4).model
        self.champ = Champion("iris-classifier", "1", "champion", 0.97, time.time(), None, "")

    def champion(self) -> Champion | None:
        return self.champ

    def load(self, champion: Champion) -> object:
        return self.model


def _app():
    holder = ModelHolder(_OneModel())
    holder.refresh()
    return create_app(ApiSettings(max_body_bytes=64 * 1024, max_batch_rows=100), holder, poll=False)


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_a1_a6_fuzz_the_api_from_its_openapi_schema(case):
    case.call_and_validate(
        checks=[
            not_a_server_error,
            status_code_conformance,
            response_schema_conformance,
            negative_data_rejection,
        ]
    )
