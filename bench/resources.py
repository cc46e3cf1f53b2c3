"""Each service's memory on the local stack, against the Kubernetes requests and limits.

One command (`make bench-resources`, or `.venv/bin/python bench/resources.py`) brings up the
local stack in a temporary IRISCTL_HOME on free loopback ports (bench/run.py's Bench), with the
model API at the workers its Kubernetes pod runs (manifests.api_workers: 2), and samples the
resident memory (RSS) of each service's whole process tree (the program supervisord started and
every descendant: uvicorn's workers, MLflow's server workers, the subprocess MLflow's
``log_model`` starts to capture the model's dependencies):

1. steady: idle, 10 s after `up` (which trains the first model), the median over 10 s;
2. under load: one-row POSTs to /predict from 32 threads for 20 s while `irisctl predict
   --file` scores a 100,000-row CSV (the API's largest batches), sampled every 0.2 s;
3. the trainer: a whole `irisctl train --now` (data, fit, ONNX export, ``log_model`` and its
   dependency-capture subprocess, registration), sampled every 0.2 s while it runs.

A sampled peak can miss a spike shorter than the interval, so beside it the table shows an
upper bound that misses none: the sum of each process's own high-water mark (VmHWM), which
counts every process at its own worst moment (the API's workers while they load the model, a
subprocess that lived a second). Limits are compared against that bound.

It prints one markdown table with the requests and limits of
``irisctl.targets.kube.manifests.RESOURCES``. MinIO, the bucket Job's ``mc`` and kube-system do
not run on the local target and are not measured.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from batch import write_rows
from run import ROW, Bench

from irisctl.targets.kube import manifests

# The local target's program → its key in manifests.RESOURCES.
SERVICES = {
    "mlflow": "mlflow",
    "model-api": "api",
    "monitor": "monitor",
    "prometheus": "prometheus",
    "alertmanager": "alertmanager",
}


def tree(pid: int) -> list[int]:
    """``pid`` and every descendant (each thread's children, recursively)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except FileNotFoundError:
            continue
        for tid in tasks:
            with suppress(FileNotFoundError):
                todo += map(int, Path(f"/proc/{p}/task/{tid}/children").read_text().split())
    return out


def status_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of one process, KiB; (0, 0) for one that ended (or a zombie)."""
    rss = hwm = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return rss, hwm


@dataclass
class Memory:
    """One service's samples: the tree's RSS over time, and each process's last-read VmHWM."""

    samples: list[tuple[str, float]] = field(default_factory=list)  # (phase, MiB)
    hwm_kib: dict[int, int] = field(default_factory=dict)
    commands: dict[int, str] = field(default_factory=dict)  # what each process was

    def sample(self, phase: str, root: int) -> None:
        total = 0
        for pid in tree(root):
            rss, hwm = status_kib(pid)
            total += rss
            if hwm:
                self.hwm_kib[pid] = max(hwm, self.hwm_kib.get(pid, 0))
                if pid not in self.commands:
                    self.commands[pid] = _command(pid)
        if total:
            self.samples.append((phase, total / 1024))

    def steady(self) -> float:
        return statistics.median(m for p, m in self.samples if p == "steady")

    def peak(self, *phases: str) -> float:
        return max((m for p, m in self.samples if p in phases), default=0.0)

    def hwm_bound(self) -> float:
        return sum(self.hwm_kib.values()) / 1024


class Sampler(threading.Thread):
    """Every ``interval`` s, each service's tree (and the trainer's, while one runs)."""

    def __init__(
        self, pids: dict[str, int], others: set[int], supervisord: int, interval: float
    ) -> None:
        super().__init__(daemon=True)
        self.pids, self.supervisord, self.interval = pids, supervisord, interval
        self.others = others | set(pids.values())  # supervisord's children that do not train
        self.memory = {name: Memory() for name in [*pids, "trainer"]}
        self.phase = "steady"
        self.stopped = threading.Event()

    def trainer(self) -> int | None:
        """The child supervisord started that is none of the services: the training run."""
        for tid in os.listdir(f"/proc/{self.supervisord}/task"):
            children = Path(f"/proc/{self.supervisord}/task/{tid}/children").read_text().split()
            for child in map(int, children):
                if child not in self.others:
                    return child
        return None

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            phase = self.phase
            for name, pid in self.pids.items():
                self.memory[name].sample(phase, pid)
            if phase == "training" and (trainer := self.trainer()) is not None:
                self.memory["trainer"].sample(phase, trainer)


def _command(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except FileNotFoundError:
        return "?"
    return " ".join(Path(a.decode()).name if i == 0 else a.decode() for i, a in enumerate(argv))[
        :80
    ]


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, IndexError):
        return 0


def load(url: str, seconds: float, threads: int) -> int:
    """One-row POSTs to ``url`` from ``threads`` threads for ``seconds``; answers that were 200."""
    deadline = time.monotonic() + seconds

    def worker() -> int:
        ok = 0
        with httpx.Client(timeout=30) as http:
            while time.monotonic() < deadline:
                with suppress(httpx.HTTPError):
                    ok += http.post(url, json={"features": ROW}).status_code == 200
        return ok

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(lambda _: worker(), range(threads)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=10, help="settle, then sample, seconds")
    parser.add_argument("--seconds", type=float, default=20, help="length of the load")
    parser.add_argument("--threads", type=int, default=32, help="concurrent one-row clients")
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the --file")
    parser.add_argument("--interval", type=float, default=0.2, help="sampling period, seconds")
    args = parser.parse_args()
    args.cli_runs = 1
    workers = manifests.POD_API_WORKERS
    b = Bench(args)
    b.env["IRISCTL_API_WORKERS"] = str(workers)
    print(f"bench: IRISCTL_HOME={b.home}", file=sys.stderr)
    try:
        print("bench: up", file=sys.stderr)
        b.irisctl("up", "--json")
        services = json.loads(b.irisctl("status", "--json").stdout)["services"]
        pids = {name: int(services[name]["pid"]) for name in SERVICES}
        others = {int(s["pid"]) for n, s in services.items() if s.get("pid") and n != "trainer"}
        sampler = Sampler(pids, others, _ppid(pids["mlflow"]), args.interval)
        print(f"bench: idle {args.idle:.0f} s, then steady for {args.idle:.0f} s", file=sys.stderr)
        time.sleep(args.idle)
        sampler.start()
        time.sleep(args.idle)

        print(f"bench: load: {args.threads} threads for {args.seconds:.0f} s", file=sys.stderr)
        rows = b.home / "rows.csv"
        write_rows(rows, args.rows)
        sampler.phase = "load"
        with ThreadPoolExecutor(1) as pool:
            scored = pool.submit(
                b.irisctl, "predict", "--file", str(rows), "--out", str(b.home / "out.csv")
            )
            answered = load(
                f"http://127.0.0.1:{b.ports['api']}/predict", args.seconds, args.threads
            )
            scored.result()
        print(f"bench: {answered:,} one-row answers; the file scored", file=sys.stderr)

        print("bench: irisctl train --now", file=sys.stderr)
        sampler.phase = "training"
        t0 = time.perf_counter()
        b.irisctl("train", "--now", "--json")
        train_s = time.perf_counter() - t0
        sampler.stopped.set()
        sampler.join()
    finally:
        b.irisctl("down", "--purge", "--yes", check=False)
        shutil.rmtree(b.home, ignore_errors=True)

    memory = sampler.memory
    if not memory["trainer"].samples:
        raise SystemExit("bench: the training run was never sampled (ended too fast?)")
    for name, m in memory.items():  # what each tree held, for a reader who wonders
        for pid, kib in m.hwm_kib.items():
            print(
                f"bench: {name}: pid {pid} VmHWM {kib / 1024:.0f} MiB: {m.commands[pid]}",
                file=sys.stderr,
            )
    print_table(memory, args, workers, answered, train_s)
    return 0


def print_table(
    memory: dict[str, Memory], args: argparse.Namespace, workers: int, answered: int, train_s: float
) -> None:
    import mlflow

    today = datetime.date.today().isoformat()
    total_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    print(
        f"\n## Memory by service — {today}, {platform.node()}: {os.cpu_count()} cores, "
        f"{total_mib:,} MiB, Python {platform.python_version()}, MLflow {mlflow.__version__}\n"
    )
    print(
        f"`.venv/bin/python bench/resources.py`: RSS of each service's process tree on the local "
        f"target; steady = median over {args.idle:.0f} s idle; load = {args.threads} threads of "
        f"one-row /predict for {args.seconds:.0f} s ({answered:,} answers) with `irisctl predict "
        f"--file` of {args.rows:,} rows; the model API at {workers} workers; training = one "
        f"`irisctl train --now` ({train_s:.0f} s); sampled every {args.interval} s. "
        "Σ VmHWM: each process's own peak, summed (an upper bound a sample cannot miss).\n"
    )
    print(
        "| service (processes seen) | steady MiB | peak under load MiB | peak in training MiB | "
        "Σ VmHWM MiB | request | limit | limit ÷ Σ VmHWM |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, key in [*SERVICES.items(), ("trainer", "trainer")]:
        m = memory[name]
        _, request, _, limit = manifests.RESOURCES[key]
        bound = m.hwm_bound()
        ratio = manifests.memory_mib(limit) / bound
        flag = "" if ratio >= 1.5 else " **below 1.5x**"
        steady = "—" if name == "trainer" else f"{m.steady():.0f}"
        under_load = "—" if name == "trainer" else f"{m.peak('load'):.0f}"
        print(
            f"| {name} ({len(m.hwm_kib)}) | {steady} | {under_load} | "
            f"{m.peak('training'):.0f} | {bound:.0f} | "
            f"{request} | {limit} | {ratio:.1f}x{flag} |"
        )
    for key, why in (
        ("minio", "does not run on the local target (artifacts on disk): not measured here"),
        ("job", "the bucket Job's `mc`: not measured here"),
    ):
        _, request, _, limit = manifests.RESOURCES[key]
        print(f"| {key} ({why}) | — | — | — | — | {request} | {limit} | — |")
    print(
        f"\nSum of requests with the node's allowance ({manifests.NODE_OVERHEAD_MIB} MiB): "
        f"{manifests.stack_memory_mib()} MiB (`manifests.stack_memory_mib()`, doctor's check)."
    )


if __name__ == "__main__":
    sys.exit(main())
