"""Compile a trained model to an ONNX graph, and prove the graph answers like the model.

The model API serves the graph with onnxruntime, without scikit-learn or MLflow, so the graph
must be the model: probabilities within ``TOLERANCE`` of scikit-learn's on every Iris row and on
random points across (and beyond) the feature ranges, and the same class. Pure: no I/O here;
``publish`` stores the graph next to the logged model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

ERROR_TAG = "iris.onnx.error"  # run tag saying why a model could not be compiled
TOLERANCE = 1e-5  # max |Δp| between the graph and scikit-learn
RANDOM_POINTS = 2000
OPSET = 17  # onnxruntime >= 1.14 runs it; skl2onnx picks the ai.onnx.ml opset to match


class ExportFailed(Exception):
    """The model could not be compiled, or its graph does not answer like the model."""


@dataclass(frozen=True)
class Graph:
    """A verified ONNX graph: its bytes, sha256 and how closely it matched scikit-learn."""

    onnx: bytes
    sha256: str
    max_abs_diff: float
    rows_checked: int


def export(model: Any, reference: np.ndarray, seed: int = 0) -> Graph:
    """Compile ``model`` (any fitted scikit-learn classifier skl2onnx knows) and verify it.

    ``reference`` is the data the model must agree on (every Iris row); random points are drawn
    across its feature ranges, widened by half a range on each side.
    """
    onnx_bytes = convert(model, reference.shape[1])
    probes = probe_rows(reference, seed)
    expected = np.asarray(model.predict_proba(probes), dtype=np.float64)
    got = run_graph(onnx_bytes, probes)
    max_diff = check_agreement(expected, got)
    return Graph(onnx_bytes, hashlib.sha256(onnx_bytes).hexdigest(), max_diff, len(probes))


def convert(model: Any, n_features: int) -> bytes:
    """The serialized graph: input ``input`` float32 [N, n_features], output probabilities."""
    try:
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import FloatTensorType

        # zipmap=False: a plain [N, classes] probability tensor, not a list of dicts.
        proto = to_onnx(
            model,
            initial_types=[("input", FloatTensorType([None, n_features]))],
            options={id(model): {"zipmap": False}},
            target_opset=OPSET,
        )
    except Exception as exc:  # skl2onnx raises many types for unsupported models
        raise ExportFailed(f"skl2onnx cannot convert {type(model).__name__}: {exc}") from exc
    return bytes(proto.SerializeToString())


def probe_rows(reference: np.ndarray, seed: int) -> np.ndarray:
    """Every reference row, then uniform random points across the widened feature ranges."""
    lo, hi = reference.min(axis=0), reference.max(axis=0)
    margin = (hi - lo) / 2
    rng = np.random.default_rng(seed)
    random = rng.uniform(lo - margin, hi + margin, size=(RANDOM_POINTS, reference.shape[1]))
    return np.vstack([reference, random]).astype(np.float64)


def run_graph(onnx_bytes: bytes, rows: np.ndarray) -> np.ndarray:
    """The graph's probabilities for ``rows``, from onnxruntime as the API runs it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        outputs = [o.name for o in session.get_outputs()]
        name = "probabilities" if "probabilities" in outputs else outputs[-1]
        probabilities = session.run([name], {"input": rows.astype(np.float32)})[0]
    except Exception as exc:
        raise ExportFailed(f"onnxruntime cannot run the graph: {exc}") from exc
    return np.asarray(probabilities, dtype=np.float64)


def check_agreement(expected: np.ndarray, got: np.ndarray) -> float:
    """The max |Δp|; raises ExportFailed when it is over ``TOLERANCE`` or a class differs.

    Where scikit-learn itself has two classes tied within the tolerance (a forest split 50/50),
    either of them is accepted: float32 summation may break the tie the other way.
    """
    if expected.shape != got.shape:
        raise ExportFailed(f"the graph answers shape {got.shape}, the model {expected.shape}")
    diff = np.nan_to_num(np.abs(expected - got), nan=np.inf)
    max_diff = float(diff.max()) if diff.size else 0.0
    if max_diff > TOLERANCE:
        row = int(np.argmax(diff.max(axis=1)))
        raise ExportFailed(
            f"the graph's probabilities differ from scikit-learn's by {max_diff:.3g} "
            f"(limit {TOLERANCE:g}), first at probe row {row}"
        )
    chosen = got.argmax(axis=1)
    top = expected.max(axis=1)
    acceptable = expected[np.arange(len(chosen)), chosen] >= top - TOLERANCE
    if not acceptable.all():
        row = int(np.argmin(acceptable))
        raise ExportFailed(
            f"the graph predicts class {int(chosen[row])} where scikit-learn predicts "
            f"{int(expected[row].argmax())} (probe row {row})"
        )
    return max_diff
