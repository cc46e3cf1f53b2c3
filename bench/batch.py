"""Batch scoring of a 1,000,000-row file: `irisctl predict --file --out` against its limits.

One command (`make bench-batch`, or `.venv/bin/python bench/batch.py`) brings up the local stack
in a temporary IRISCTL_HOME on free loopback ports (bench/run.py's Bench), writes a CSV of
iris-like rows, and in the same run times:

- in-process scoring: read the CSV (numpy) and run the champion's ONNX graph in this process,
  the physical limit of the machine;
- `irisctl predict --file … --out …` through the model API: the stack's own API (2 workers) and
  the same entry point started with 1 worker; its peak RSS (the process's own, from wait4) on
  10,000 and 1,000,000 rows;
- `mlflow models serve` on the same champion (2 workers) fed the same rows as 10,000-row JSON
  requests to /invocations, two in flight.

It prints one table; the ratios are from the same run, so machine noise hits every row alike.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from run import BIN, Bench, answers, wait_for


def write_rows(path: Path, n: int) -> None:
    rnd = random.Random(0)
    with path.open("w") as fh:
        fh.write("sepal_length,sepal_width,petal_length,petal_width\n")
        for _ in range(n):
            fh.write(
                f"{rnd.uniform(4.3, 7.9):.1f},{rnd.uniform(2.0, 4.4):.1f},"
                f"{rnd.uniform(1.0, 6.9):.1f},{rnd.uniform(0.1, 2.5):.1f}\n"
            )


def in_process(b: Bench, path: Path) -> float:
    """rows/s of reading the CSV and running the champion's graph in this one process."""
    import numpy as np

    from iris_services.api.mlflow_rest import RestRegistry

    # Verified with the stack's key, as the API verifies it.
    registry = RestRegistry(
        b.mlflow, "iris-classifier", "champion", b.home / "bench-graphs", key_file=str(b.key_file)
    )
    champion = registry.champion()
    assert champion is not None
    model = registry.load(champion)
    t0 = time.perf_counter()
    rows = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float32)
    proba = model.predict_proba(rows)  # type: ignore[attr-defined]
    proba.argmax(axis=1)
    return len(rows) / (time.perf_counter() - t0)


def cli(b: Bench, path: Path, out: Path, api_port: int) -> tuple[float, float, int]:
    """(seconds, peak RSS MiB, rows) of one `irisctl predict --file --out` run."""
    env = {**b.env, "IRISCTL_API_PORT": str(api_port)}
    cmd = [str(BIN / "irisctl"), "predict", "--file", str(path), "--out", str(out), "--json"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    stdout = proc.stdout.read() if proc.stdout else b""
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"bench: irisctl predict failed: {err}")
    rows = json.loads(stdout)["rows"]
    return seconds, usage.ru_maxrss / 1024, rows


def mlflow_serve(b: Bench, path: Path, workers: int) -> float:
    """rows/s of `mlflow models serve` fed the file as 10,000-row requests, 2 in flight."""
    # {"inputs": [[...], ...]}: the form bench/run.py sends it too (its CSV input wants the
    # signature's column names, which a model logged from a numpy example does not have).
    rows = [[float(c) for c in line.split(",")] for line in path.read_text().splitlines()[1:]]
    bodies = [json.dumps({"inputs": rows[i : i + 10_000]}) for i in range(0, len(rows), 10_000)]
    url, cm = b.mlflow_serve(workers)
    with cm, httpx.Client(timeout=300) as http:  # type: ignore[attr-defined]
        wait_for(lambda: answers(f"{url}/ping"), 180, "mlflow models serve")

        def post(body: str) -> int:
            resp = http.post(
                f"{url}/invocations", content=body, headers={"content-type": "application/json"}
            )
            if resp.status_code != 200:
                raise SystemExit(f"bench: mlflow models serve answered {resp.text[:300]}")
            return len(resp.json()["predictions"])

        post(bodies[0])  # warm up
        t0 = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            scored = sum(pool.map(post, bodies))
        seconds = time.perf_counter() - t0
    assert scored == len(rows), (scored, len(rows))
    return scored / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    args.cli_runs = 1
    b = Bench(args)
    b.env["IRISCTL_API_WORKERS"] = "2"
    print(f"bench: IRISCTL_HOME={b.home}", file=sys.stderr)
    try:
        b.irisctl("up", "--json")
        big, small = b.home / "rows-big.csv", b.home / "rows-10k.csv"
        write_rows(big, args.rows)
        write_rows(small, 10_000)
        print("bench: in-process", file=sys.stderr)
        inproc = in_process(b, big)
        print(f"bench: in-process {inproc:,.0f} rows/s", file=sys.stderr)
        results = {}
        print("bench: irisctl predict --file, 2 workers (the stack's API)", file=sys.stderr)
        s2, rss_big, n = cli(b, big, b.home / "out.csv", b.ports["api"])
        _, rss_small, _ = cli(b, small, b.home / "out-10k.csv", b.ports["api"])
        results[2] = n / s2
        print(
            f"bench: {results[2]:,.0f} rows/s; RSS {rss_small:.0f} / {rss_big:.0f} MiB",
            file=sys.stderr,
        )
        print("bench: irisctl predict --file, 1 worker", file=sys.stderr)
        url, cm = b.api_server(1)
        with cm:  # type: ignore[attr-defined]
            wait_for(lambda: answers(f"{url}/readyz"), 120, "our API, 1 worker")
            s1, _, n = cli(b, big, b.home / "out1.csv", int(url.rsplit(":", 1)[1]))
            results[1] = n / s1
            print(f"bench: {results[1]:,.0f} rows/s", file=sys.stderr)
        print("bench: mlflow models serve, 2 workers", file=sys.stderr)
        theirs = mlflow_serve(b, big, 2)
    finally:
        b.irisctl("down", "--purge", "--yes", check=False)

    print(f"\n{args.rows:,} rows, {os.cpu_count()} cores, loopback; ratios from this one run\n")
    print("| scoring | rows/s | ÷ in-process | ÷ mlflow models serve |")
    print("|---|---|---|---|")
    table = [
        ("in-process (numpy read + ONNX graph, one process)", inproc),
        ("`irisctl predict --file --out`, API 1 worker", results[1]),
        ("`irisctl predict --file --out`, API 2 workers (local target)", results[2]),
        ("`mlflow models serve`, 2 workers, 10,000-row JSON requests", theirs),
    ]
    for name, rate in table:
        print(f"| {name} | {rate:,.0f} | {rate / inproc:.2f} | {rate / theirs:.1f}x |")
    print(
        f"\n| `irisctl predict --file --out` peak RSS | 10,000 rows: {rss_small:.0f} MiB; "
        f"{args.rows:,} rows: {rss_big:.0f} MiB |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
