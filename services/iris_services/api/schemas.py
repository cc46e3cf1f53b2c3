"""Request schemas and the strict JSON parsing in front of them (RELIABILITY.md A3-A6)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

N_FEATURES = 4

# Strict: no "5.1" strings, no booleans, no extra keys; finite numbers only.
_STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
# The models compute in float32 (as scikit-learn's trees do): larger values would become inf.
FLOAT32_MAX = 3.4028234e38
Feature = Annotated[float, Field(ge=-FLOAT32_MAX, le=FLOAT32_MAX)]
Row = Annotated[list[Feature], Field(min_length=N_FEATURES, max_length=N_FEATURES)]


class PredictOne(BaseModel):
    """One flower: sepal length, sepal width, petal length, petal width (cm)."""

    model_config = _STRICT
    features: Row = Field(examples=[[5.1, 3.5, 1.4, 0.2]])


class PredictBatch(BaseModel):
    """Several flowers, four measurements each."""

    model_config = _STRICT
    instances: list[Row] = Field(min_length=1, examples=[[[5.1, 3.5, 1.4, 0.2]]])


class Prediction(BaseModel):
    """The answer for one flower."""

    prediction: str = Field(examples=["setosa"])
    class_index: int = Field(ge=0, examples=[0])
    probabilities: dict[str, float] = Field(
        examples=[{"setosa": 1.0, "versicolor": 0.0, "virginica": 0.0}]
    )
    id: str = Field(
        description="This prediction's id: send it with the true class to POST /feedback.",
        examples=[
            "AV3-FGsDAAAAAGZmZmZmZhRAAAAAAAAADEBmZmZmZmb2P5qZmZmZmck_NRjwOaPOyej79b34UwP99FHP"
        ],
    )
    warnings: list[str] = Field(
        default=[],
        description="Only when a value is negative or outside the model's training range: the "
        "row is still answered, but the model never saw such a flower.",
        examples=[["petal_length 30.0 is outside the training range 1.0–6.9"]],  # noqa: RUF001
    )


class ModelRef(BaseModel):
    """The registered model version that answered."""

    name: str
    version: str


class PredictOneAnswer(Prediction):
    """The answer to ``features``."""

    model: ModelRef


class PredictBatchAnswer(BaseModel):
    """The answer to ``instances``: one prediction per row, in order."""

    predictions: list[Prediction]
    model: ModelRef


class FeedbackLabel(BaseModel):
    """The true class of one prediction."""

    model_config = _STRICT
    id: str = Field(description="The prediction's id, from its answer")
    label: Literal["setosa", "versicolor", "virginica"]


class FeedbackRequest(BaseModel):
    """Labels for earlier predictions (documentation: api/feedback.py parses the body)."""

    model_config = _STRICT
    labels: list[FeedbackLabel] = Field(min_length=1, max_length=10_000)


class FeedbackAnswer(BaseModel):
    """What became of the labels: an id labelled before is a duplicate (counted once); an id
    this stack did not issue, or issued longer ago than ids live, is unknown."""

    accepted: int = Field(ge=0)
    duplicates: list[str]
    unknown: list[str]


class BadInput(ValueError):
    """The body is not a valid prediction request; the message is safe to return."""


class TooManyRows(BadInput):
    """A batch over the row limit (413), found before any row is validated."""


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        # Linear: this runs on the event loop, and a 1 MiB body holds ~100,000 keys.
        seen: set[str] = set()
        repeated: set[str] = set()
        for key, _ in pairs:
            (repeated if key in seen else seen).add(key)
        dupes = sorted(repeated)
        shown = ", ".join(repr(k[:40]) for k in dupes[:5]) + (", ..." if len(dupes) > 5 else "")
        raise BadInput(f"duplicate key in JSON object: {shown}")
    return data


def _reject_constant(name: str) -> float:
    raise BadInput(f"{name} is not a valid feature value (finite numbers only)")


def parse(body: bytes, max_rows: int | None = None) -> PredictOne | PredictBatch:
    """Parse and validate a /predict body, or raise BadInput with a readable message
    (TooManyRows when ``instances`` holds more than ``max_rows`` rows)."""
    try:
        data = json.loads(
            body, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant
        )
    except BadInput:
        raise
    except RecursionError:
        raise BadInput("JSON is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadInput('body must be a JSON object with "features" or "instances"')
    if "instances" in data:
        rows = data["instances"]
        if max_rows is not None and isinstance(rows, list) and len(rows) > max_rows:
            raise TooManyRows(f"a batch holds at most {max_rows} rows")
        model: type[BaseModel] = PredictBatch
    elif "features" in data:
        model = PredictOne
    else:
        raise BadInput(
            'body must have a "features" list of 4 numbers, or an "instances" list of them'
        )
    try:
        return model.model_validate(data)  # type: ignore[return-value]
    except ValidationError as exc:
        raise BadInput(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """Pydantic's errors as one line, without echoing the input (it may hold NaN)."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts[:10]) + ("; ..." if len(parts) > 10 else "")
