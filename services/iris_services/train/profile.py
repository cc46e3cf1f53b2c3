"""The reference profile of a model's training rows: what "inputs like the training data" means.

Pure: rows in, a JSON-serialisable dict out. The trainer logs it beside the model as the run
artifact ``reference_profile.json``; the model API bins the rows it serves with the same edges
and compares the two with the Population Stability Index (api/drift.py).

Binning, shared with the API: ``edges`` are the training rows' quantiles at 1/k … (k-1)/k, ties
merged; a value ``v`` falls in bin ``searchsorted(edges, v, side="right")``, so there are
``len(edges) + 1`` bins and the first and last are open-ended (values outside the training
range land there).
"""

from __future__ import annotations

from typing import Any

import numpy as np

FORMAT = 1
N_BINS = 10  # deciles: PSI's usual binning


def reference_profile(
    x: np.ndarray,
    y: np.ndarray,
    feature_names: list[str] | tuple[str, ...],
    class_names: list[str] | tuple[str, ...],
    n_bins: int = N_BINS,
) -> dict[str, Any]:
    """Per feature: quantile bin edges and the rows in each bin, min and max; class priors."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[1] != len(feature_names) or len(x) == 0 or len(y) != len(x):
        raise ValueError(f"need rows of {len(feature_names)} features and one label per row")
    if n_bins < 2:
        raise ValueError("n_bins must be at least 2")
    features = {}
    for i, name in enumerate(feature_names):
        column = x[:, i]
        edges = np.unique(np.quantile(column, np.arange(1, n_bins) / n_bins))
        counts = np.bincount(np.searchsorted(edges, column, side="right"), minlength=len(edges) + 1)
        features[name] = {
            "edges": [float(e) for e in edges],
            "counts": [int(c) for c in counts],
            "min": float(column.min()),
            "max": float(column.max()),
        }
    priors = np.bincount(y.astype(int), minlength=len(class_names)) / len(y)
    return {
        "format": FORMAT,
        "rows": len(x),
        "feature_order": list(feature_names),
        "features": features,
        "class_priors": {name: float(p) for name, p in zip(class_names, priors, strict=True)},
    }
