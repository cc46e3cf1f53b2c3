"""irisctl's soak check (RELIABILITY.md B4/H2): predictions under load while trainings run and
new champions are promoted, bounded in time.

One command (`make soak`, or `.venv/bin/python bench/soak.py --seconds 120`) brings up the local
stack in a temporary IRISCTL_HOME on free loopback ports, with a fixed training seed so every
training ties the champion and is promoted (a new version each time). Then, for ``--seconds``:

- ``--clients`` threads POST one-row predictions as fast as they can (httpx, keep-alive),
  recording status, served version and latency of every request;
- every ``--train-every`` seconds, `irisctl train --now` runs and promotes a new version;
- the model API's memory (its whole process group) is sampled every 5 s, and once more 20 s
  after the load stops (the last promotion settled).

It prints one table: requests, failures (must be 0), latency percentiles, versions served (they
must never go back on one connection), promotions, and the API's memory at the start, middle and
end. Exit 1 when a request failed, nothing was promoted, or the memory grew more than
``--max-growth-mib``.
Everything it started is stopped at the end (`irisctl down --purge`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from run import free_port  # bench/run.py, beside this script

BIN = Path(sys.executable).parent
ROW = [5.1, 3.5, 1.4, 0.2]


def group_rss_mib(pid: int) -> float:
    """Resident memory of every process in ``pid``'s process group, MiB."""
    group, total = os.getpgid(pid), 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == group:
                    status = Path(f"/proc/{entry}/status").read_text()
                    total += next(
                        int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmRSS:")
                    )
            except (OSError, StopIteration):
                continue
    return total / 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120, help="soak length [120]")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients [8]")
    parser.add_argument("--train-every", type=float, default=20, help="seconds between trainings")
    parser.add_argument("--max-growth-mib", type=float, default=50, help="allowed RSS growth")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="irisctl-soak-"))
    env = {
        **os.environ,
        "IRISCTL_HOME": str(home),
        "IRISCTL_TARGET": "local",
        "IRISCTL_TRAIN_SEED": "4",  # every run ties the champion: promoted each time
        "IRISCTL_POLL_SECONDS": "2",
        **{
            f"IRISCTL_{k}_PORT": str(free_port())
            for k in ("MLFLOW", "API", "MONITOR", "PROMETHEUS", "ALERTMANAGER")
        },
    }
    api = f"http://127.0.0.1:{env['IRISCTL_API_PORT']}"

    def irisctl(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "irisctl"), *argv], env=env, capture_output=True, text=True, timeout=600
        )

    print(f"soak: bringing the local stack up in {home}", flush=True)
    up = irisctl("up")
    if up.returncode != 0:
        print(up.stdout, up.stderr, file=sys.stderr)
        return 1
    results: list[tuple[int, int, float]] = []  # (status, version, seconds)
    went_back = 0  # a connection (one API worker) answering with an older version than before
    stop = threading.Event()

    def client() -> None:
        nonlocal went_back
        newest = 0
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    r = http.post(f"{api}/predict", json={"features": ROW})
                    version = int(r.json()["model"]["version"]) if r.status_code == 200 else -1
                    results.append((r.status_code, version, time.perf_counter() - t0))
                    went_back += 0 < version < newest
                    newest = max(newest, version)
                except (httpx.HTTPError, ValueError, KeyError):
                    results.append((0, -1, time.perf_counter() - t0))

    try:
        status = subprocess.run(
            [str(BIN / "irisctl"), "status", "--json"], env=env, capture_output=True, text=True
        )
        api_pid = json.loads(status.stdout)["services"]["model-api"]["pid"]
        memory = [(0.0, group_rss_mib(api_pid))]
        threads = [threading.Thread(target=client, daemon=True) for _ in range(args.clients)]
        started = time.monotonic()
        for t in threads:
            t.start()
        trainings = promotions = 0
        next_train, next_sample = started + args.train_every / 2, started + 5
        while (now := time.monotonic()) - started < args.seconds:
            if now >= next_train:
                trained = irisctl("train", "--now", "--json")
                if trained.returncode == 0:
                    trainings += 1
                    promotions += bool(json.loads(trained.stdout)["summary"]["promoted"])
                next_train = time.monotonic() + args.train_every
            if now >= next_sample:
                memory.append((now - started, group_rss_mib(api_pid)))
                next_sample = now + 5
            time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join(15)
        # Settle: let the last promotion's graph load and the drift ticks finish, then measure
        # the steady state.
        time.sleep(20)
        memory.append((time.monotonic() - started, group_rss_mib(api_pid)))
    finally:
        stop.set()
        irisctl("down", "--purge", "--yes")

    failures = [s for s, _, _ in results if s != 200]
    versions = [v for s, v, _ in results if s == 200]
    latencies = [d * 1000 for s, _, d in results if s == 200]
    growth = memory[-1][1] - memory[0][1]
    middle = memory[len(memory) // 2][1]
    rows = [
        ("duration", f"{args.seconds:.0f} s, {args.clients} clients"),
        ("requests", f"{len(results):,} ({len(results) / args.seconds:,.0f}/s)"),
        ("failed requests", f"{len(failures)}"),
        (
            "latency p50 / p95 / p99",
            " / ".join(f"{percentile(latencies, q):.1f} ms" for q in (0.5, 0.95, 0.99)),
        ),
        (
            "latency median / max",
            f"{statistics.median(latencies):.1f} / {max(latencies):.1f} ms" if latencies else "-",
        ),
        ("trainings / promotions", f"{trainings} / {promotions}"),
        (
            "versions served",
            f"{min(versions) if versions else '-'} → "
            f"{max(versions) if versions else '-'} ({len(set(versions))} distinct)",
        ),
        ("older version after a newer (per connection)", f"{went_back}"),
        (
            "API RSS start / middle / end (settled)",
            f"{memory[0][1]:.0f} / {middle:.0f} / "
            f"{memory[-1][1]:.0f} MiB (growth {growth:+.0f} MiB)",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    ok = not failures and promotions > 0 and growth <= args.max_growth_mib
    print("\nsoak:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
