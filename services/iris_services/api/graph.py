"""The served model: a verified ONNX graph run by onnxruntime (no scikit-learn, no MLflow).

The trainer compiled the model and proved the graph equal to scikit-learn's answers
(``iris_services.train.onnx_export``); here it is only run.
"""

from __future__ import annotations

import hashlib

import numpy as np
import onnxruntime as ort


def served(probabilities: np.ndarray) -> np.ndarray:
    """The probabilities the API answers: the graph's, renormalised in float64 so each row sums
    to 1 within 1e-9. The graph sums a forest's trees in float32 (a row scikit-learn gives 1.0
    came out 0.999999); each value stays in [0, 1] and within 1e-6 of scikit-learn's (the
    trainer measures both, ``onnx_export.export``).
    """
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, None)
    total = p.sum(axis=1, keepdims=True)
    # A sum of non-negative floats is at least each of them, so p / total stays within [0, 1].
    return np.divide(p, total, out=np.zeros_like(p), where=total > 0)


class GraphModel:
    """An ONNX classifier: rows in (float32 [N, 4]), class probabilities out ([N, classes])."""

    def __init__(self, onnx_bytes: bytes, sha256: str | None = None) -> None:
        digest = hashlib.sha256(onnx_bytes).hexdigest()
        if sha256 is not None and digest != sha256:
            raise ValueError(f"graph digest {digest} is not the registered {sha256}")
        self.sha256 = digest
        self.size = len(onnx_bytes)
        options = ort.SessionOptions()
        # One thread per worker: the API runs one worker process per core, and a 4-feature row
        # is far too small to split; more threads only oversubscribe the cores.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(
            onnx_bytes, options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        outputs = [o.name for o in self._session.get_outputs()]
        # skl2onnx with zipmap=False names them ["label", "probabilities"].
        self._output = "probabilities" if "probabilities" in outputs else outputs[-1]

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """Class probabilities for ``rows``: the one place rows become probabilities."""
        feed = {self._input: np.asarray(rows, dtype=np.float32)}
        return self._session.run([self._output], feed)[0]
