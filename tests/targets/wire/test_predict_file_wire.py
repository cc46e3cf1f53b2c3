"""`irisctl --target minikube predict --file --out` (issue 20) through the port-forward.

The stack is "up" on the API-server emulator (the ``site`` fixture of conftest.py),
except that the model-api pod is served by the real API app (real ONNX graphs, the registry fake
of test_api); the CLI runs as a real subprocess and reaches it through irisctl's own forwarder
(the kubernetes client's pod portforward over the emulator's websocket), so several kept-alive
connections carry many CSV requests through the same path a user's would.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys

from tests.cli.test_predict_file import Api, rows_csv

from .conftest import PORTS, target, up


def test_a_file_scores_through_the_port_forward_in_order(site, tmp_path):
    served = Api()
    with served.server as url:
        site.emu.serve("model-api", PORTS["model-api"][0], "127.0.0.1", int(url.rsplit(":", 1)[1]))
        up(target(), forward=True)
        try:
            rows = rows_csv(tmp_path / "in.csv", 3_000)
            out = tmp_path / "scores.csv"
            proc = subprocess.run(
                [sys.executable, "-m", "irisctl", "--target", "minikube", "predict",
                 "--file", str(tmp_path / "in.csv"), "--out", str(out), "--chunk-rows", "300"],
                env={**os.environ, "NO_COLOR": "1"}, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
        finally:
            target().stop_forwarder()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with out.open() as fh:
        got = list(csv.DictReader(fh))
    assert [[r["sepal_length"], r["sepal_width"], r["petal_length"], r["petal_width"]]
            for r in got] == rows  # fmt: skip
    assert {r["model_version"] for r in got} == {"1"}
    assert "Scored 3,000 rows" in proc.stderr
    # Through the forward, not around it: the emulator upgraded the pod's portforward.
    assert any("portforward" in path for _, path in site.emu.requests)
