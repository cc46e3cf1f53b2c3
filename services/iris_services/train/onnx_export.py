"""Compile a trained model to an ONNX graph, and prove the graph answers like the model.

The model API serves the graph with onnxruntime, without scikit-learn or MLflow, so the graph
must be the model: the probabilities the API answers (``api.graph.served``: the graph's,
renormalised in float64) within ``TOLERANCE`` of scikit-learn's on every Iris row and on random
points across (and beyond) the feature ranges, summing to 1 within ``SUM_TOLERANCE``, and the
same class. Pure: no I/O here;
``publish`` stores the graph next to the logged model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

ERROR_TAG = "iris.onnx.error"  # run tag saying why a model could not be compiled
TOLERANCE = 1e-6  # max |Δp| between the served answer and scikit-learn
SUM_TOLERANCE = 1e-9  # max |Σp - 1| of a served answer
RANDOM_POINTS = 2000
OPSET = 17  # onnxruntime >= 1.14 runs it; skl2onnx picks the ai.onnx.ml opset to match


class ExportFailed(Exception):
    """The model could not be compiled, or its graph does not answer like the model."""


@dataclass(frozen=True)
class Graph:
    """A verified ONNX graph: its bytes, sha256 and how closely it matched scikit-learn."""

    onnx: bytes
    sha256: str
    max_abs_diff: float  # of the served (renormalised) probabilities
    rows_checked: int
    # The graph's own float32 output, measured too: on the trainer's forests it is off by up to
    # ~8e-7 and its rows sum to 1 only within ~8e-7; renormalised, ~1e-7 and 1e-16. skl2onnx's
    # double-input graph of a forest still sums its trees in float32 (TreeEnsembleClassifier),
    # so its rows sum to 1 only within ~1e-7: renormalising is the option that meets 1e-9.
    raw_max_abs_diff: float = 0.0


def export(model: Any, reference: np.ndarray, seed: int = 0) -> Graph:
    """Compile ``model`` (any fitted scikit-learn classifier skl2onnx knows) and verify it.

    ``reference`` is the data the model must agree on (every Iris row); random points are drawn
    across its feature ranges, widened by half a range on each side.
    """
    onnx_bytes = convert(model, reference.shape[1])
    probes = probe_rows(reference, seed)
    from ..api.graph import served

    expected = np.asarray(model.predict_proba(probes), dtype=np.float64)
    raw = run_graph(onnx_bytes, probes, renormalise=False)
    max_diff = check_agreement(expected, served(raw))
    raw_diff = float(np.nan_to_num(np.abs(expected - raw), nan=np.inf).max())
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    return Graph(onnx_bytes, digest, max_diff, len(probes), raw_diff)


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


def run_graph(onnx_bytes: bytes, rows: np.ndarray, renormalise: bool = True) -> np.ndarray:
    """The probabilities the API answers for ``rows``, from onnxruntime as the API runs it
    (``renormalise=False``: the graph's own output)."""
    import onnxruntime as ort

    from ..api.graph import served

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
    return served(probabilities) if renormalise else np.asarray(probabilities, dtype=np.float64)


def check_agreement(expected: np.ndarray, got: np.ndarray) -> float:
    """The max |Δp|; raises ExportFailed when it is over ``TOLERANCE``, a row of ``got`` does not
    sum to 1 within ``SUM_TOLERANCE``, or a class differs.

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
    off = np.abs(got.sum(axis=1) - 1.0)
    if off.size and float(off.max()) > SUM_TOLERANCE:
        raise ExportFailed(
            f"the graph's probabilities sum to 1 only within {float(off.max()):.3g} "
            f"(limit {SUM_TOLERANCE:g}), first at probe row {int(np.argmax(off))}"
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
