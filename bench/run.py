"""irisctl's benchmark: the model API against `mlflow models serve` on the same champion.

One command (`make bench`, or `.venv/bin/python bench/run.py`) brings up the local stack in a
temporary IRISCTL_HOME on free loopback ports, then:

- drives our model API and `mlflow models serve` with the same load generator (wrk: 2 threads,
  32 connections, one-row requests, bounded in time) at 1 and 2 worker processes, for the
  seed's model family (a 100-tree random forest from the trainer) and a logistic regression;
- times a 1,000-row batch, a champion swap under load, and a memory soak;
- times the CLI: `irisctl --help` against `python -c "import typer, rich"`, `predict`,
  `status`, and `up` (with its breakdown);

and prints one table of medians over repeated runs. Everything runs on 127.0.0.1 and is
stopped at the end (process groups it started).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from iris_services.common import signing

BIN = Path(sys.executable).parent
ROW = [5.1, 3.5, 1.4, 0.2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out waiting for {what}")
        time.sleep(0.3)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def process(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A server in its own process group, stopped (group-wide) on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(timeout=15)
                    break
                except ProcessLookupError:
                    break
                except subprocess.TimeoutExpired:
                    continue


# -- load generation ---------------------------------------------------------------------------


@dataclass
class Load:
    rps: float
    p50: float
    p90: float
    p99: float
    errors: int


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(
    url: str, body: str, seconds: float, connections: int = 32, cpus: set[int] | None = None
) -> Load:
    """One bounded wrk run: POST ``body`` to ``url`` (on ``cpus`` only, when given)."""
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    try:
        out = subprocess.run(
            [
                *(["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []),
                "wrk",
                "-t2",
                f"-c{connections}",
                f"-d{seconds:.0f}s",
                "--latency",
                "-s",
                str(script),
                url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
    finally:
        script.unlink()
    lat = {
        m[0]: float(m[1]) * _UNITS[m[2]]
        for m in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(g) for g in sock.groups())
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    if len(lat) < 3:  # too few answers for a latency distribution (a server that stalled)
        print(f"bench: wrk gave no latency percentiles for {url}:\n{out}", file=sys.stderr)
    nan = float("nan")
    return Load(rps, lat.get("50", nan), lat.get("90", nan), lat.get("99", nan), errors)


def median_load(runs: list[Load]) -> Load:
    return Load(
        *(statistics.median(getattr(r, f) for r in runs) for f in ("rps", "p50", "p90", "p99")),
        errors=sum(r.errors for r in runs),
    )


# -- the stack and the servers under test ----------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.home = Path(tempfile.mkdtemp(prefix="irisctl-bench-"))
        self.ports = {
            k: free_port() for k in ("mlflow", "api", "monitor", "prometheus", "alertmanager")
        }
        self.env = {
            **os.environ,
            "IRISCTL_HOME": str(self.home),
            **{f"IRISCTL_{k.upper()}_PORT": str(p) for k, p in self.ports.items()},
            "IRISCTL_TRAIN_SEED": "5",  # the trainer samples a 100-tree forest for this seed
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.mlflow = f"http://127.0.0.1:{self.ports['mlflow']}"
        # The stack's signing key (the local target keeps it under data/, written by `up`): the
        # API serves only versions signed with it, so the bench's own versions are signed too.
        self.key_file = self.home / "data" / signing.KEY_FILE_NAME
        self.rows: list[tuple[str, str]] = []

    def irisctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "irisctl"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=check,
        )

    def cli_timings(self) -> dict[str, float]:
        def timed(cmd: list[str], n: int) -> float:
            samples = []
            for _ in range(n):
                t0 = time.perf_counter()
                subprocess.run(cmd, env=self.env, capture_output=True, timeout=60, check=True)
                samples.append(time.perf_counter() - t0)
            return statistics.median(samples) * 1000

        n = self.args.cli_runs
        return {
            "python -c 'import typer, rich'": timed(
                [sys.executable, "-c", "import typer, rich"], n
            ),
            "irisctl --help": timed([str(BIN / "irisctl"), "--help"], n),
            "irisctl predict 5.1 3.5 1.4 0.2": timed(
                [str(BIN / "irisctl"), "predict", *map(str, ROW)], n
            ),
            "irisctl status": timed([str(BIN / "irisctl"), "status", "--json"], n),
        }

    def api_server(
        self, workers: int, cache: Path | None = None, tag: str = "", poll_s: float = 1
    ) -> tuple[str, object]:
        port = free_port()
        env = {
            **self.env,
            "MLFLOW_TRACKING_URI": self.mlflow,
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "IRIS_API_WORKERS": str(workers),
            "IRIS_POLL_SECONDS": str(poll_s),
            signing.KEY_FILE_ENV: str(self.key_file),
        }
        if cache is not None:
            env["IRIS_MODEL_CACHE_DIR"] = str(cache)
        cm = process(
            [sys.executable, "-m", "iris_services.api"],
            env,
            self.home / f"bench-api-{workers}{tag}.log",
        )
        return f"http://127.0.0.1:{port}", cm

    def floor_server(self, workers: int) -> tuple[str, object]:
        """bench/floor.py: the API's server stack with a /predict that does no model work."""
        port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "floor:app",
            "--app-dir",
            str(Path(__file__).parent),
        ]
        cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
        cmd += ["--no-access-log", "--log-level", "warning"]
        return f"http://127.0.0.1:{port}", process(
            cmd, self.env, self.home / f"bench-floor-{workers}.log"
        )

    def register_logistic_regression(self) -> str:
        """Log a logistic regression with its ONNX graph (as the trainer does) and promote it."""
        os.environ.update(
            {
                "MLFLOW_TRACKING_URI": self.mlflow,
                "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",
                "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
            }
        )
        import mlflow
        import mlflow.sklearn
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression

        from iris_services.common.names import DIGEST_TAG, GRAPH_FILE
        from iris_services.train import onnx_export

        iris = load_iris()
        model = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)
        client = mlflow.MlflowClient(self.mlflow)
        mlflow.set_experiment("iris_bench")
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(model, name="model", input_example=iris.data[:2])
        graph = onnx_export.export(model, iris.data)
        path = self.home / GRAPH_FILE
        path.write_bytes(graph.onnx)
        client.log_model_artifact(info.model_id, str(path))
        client.set_logged_model_tags(info.model_id, {DIGEST_TAG: graph.sha256})
        mv = client.create_model_version(
            "iris-classifier", info.model_uri, tags={"accuracy": "1.0"}, model_id=info.model_id
        )
        self._sign(client, str(mv.version), graph.sha256)
        client.set_registered_model_alias("iris-classifier", "champion", str(mv.version))
        return str(mv.version)

    def _sign(self, client: Any, version: str, digest: str) -> None:
        """Sign a version as the trainer does (common/signing.py), with the stack's key."""
        key = signing.read_key_file(self.key_file)
        tag = signing.sign_version(key, "iris-classifier", version, digest)
        client.set_model_version_tag("iris-classifier", version, signing.SIGNATURE_TAG, tag)

    def promote_again(self) -> None:
        """Re-register the champion's model as a new version and move the alias to it."""
        import mlflow

        from iris_services.common.names import DIGEST_TAG

        client = mlflow.MlflowClient(self.mlflow)
        mv = client.get_model_version_by_alias("iris-classifier", "champion")
        model_id = mv.model_id or mv.source.rsplit("/", 1)[-1]  # source: models:/m-<id>
        new = client.create_model_version(
            "iris-classifier", mv.source, tags=mv.tags, model_id=model_id
        )
        digest = client.get_logged_model(model_id).tags[DIGEST_TAG]
        self._sign(client, str(new.version), digest)
        client.set_registered_model_alias("iris-classifier", "champion", str(new.version))

    def mlflow_serve(self, workers: int) -> tuple[str, object]:
        port = free_port()
        env = {
            **self.env,
            "MLFLOW_TRACKING_URI": self.mlflow,
            "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",
        }
        cm = process(
            [
                str(BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                "models:/iris-classifier@champion",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-w",
                str(workers),
                "--env-manager",
                "local",
            ],
            env,
            self.home / f"bench-mlflow-serve-{workers}.log",
        )
        return f"http://127.0.0.1:{port}", cm


def load_servers(
    b: Bench, model: str, workers: int, results: dict, floors: dict | None = None
) -> None:
    """Our API and `mlflow models serve` (and, with ``floors``, the HTTP floor), interleaved."""
    runs, seconds = b.args.runs, b.args.seconds
    ours_url, ours_cm = b.api_server(workers)
    theirs_url, theirs_cm = b.mlflow_serve(workers)
    floor_url, floor_cm = b.floor_server(workers)
    with ours_cm, theirs_cm, floor_cm:  # type: ignore[attr-defined]
        wait_for(lambda: answers(f"{ours_url}/readyz"), 120, "our API")
        wait_for(lambda: answers(f"{theirs_url}/ping"), 120, "mlflow models serve")
        wait_for(lambda: answers(f"{floor_url}/docs"), 60, "the HTTP floor")
        ours_body = json.dumps({"features": ROW})
        theirs_body = json.dumps({"inputs": [ROW]})
        wrk(f"{ours_url}/predict", ours_body, 2)  # warm up both
        wrk(f"{theirs_url}/invocations", theirs_body, 2)
        ours, theirs, floor = [], [], []
        for _ in range(runs):  # interleaved, so machine noise hits both alike
            ours.append(wrk(f"{ours_url}/predict", ours_body, seconds))
            theirs.append(wrk(f"{theirs_url}/invocations", theirs_body, seconds))
            if floors is not None:
                floor.append(wrk(f"{floor_url}/predict", ours_body, seconds))
    results[(model, workers)] = (median_load(ours), median_load(theirs))
    if floors is not None:
        floors[workers] = median_load(floor)


def cpu_seconds(root_pid: int) -> float:
    """CPU time (user + system) of a process and its children (the API's workers), seconds."""
    pids = [root_pid]
    children = Path(f"/proc/{root_pid}/task/{root_pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        except FileNotFoundError:
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def served(url: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith('iris_api_requests_total{status="200"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@dataclass
class DriftCost:
    on: Load  # medians over every run of the role
    off: Load
    cost: float  # median of the paired on/off throughput ratios, minus 1
    cost_q1: float  # their quartiles
    cost_q3: float
    cpu_on_us: float  # the API's CPU time per request, microseconds (medians)
    cpu_off_us: float
    pairs: int  # paired runs
    processes: int  # API processes per role
    rounds: int
    seconds: float
    pinned: bool
    aa: bool  # an A/A check: off in both roles


def drift_overhead(b: Bench, processes: int = 3) -> DriftCost:
    """One-row throughput at 1 worker with the input-drift bookkeeping on and off.

    On a shared 2-core machine one process's throughput moves by ±10 % from one run to the
    next, and each process has a bias of its own of a few %: an earlier design (one process per
    role, measured alternately) measured the first process of an A/A pair (off in both) ~7 %
    slower. So ``processes`` API processes run per role, each "on" paired with an "off"; a pair
    is started and measured back to back, in orders that alternate from pair to pair and round
    to round, with the API pinned to one core and wrk on the others, and the cost is the median
    of the paired throughput ratios (with its quartiles, the spread a reader should allow).
    The API's CPU time per request, which moves less with the neighbours, is reported beside
    it. ``--aa`` runs the same with the bookkeeping off in both roles: the measurement's own
    noise, to read the row against."""
    # Many short runs: the two runs of a pair are close in time, so the machine's drift cancels.
    rounds, seconds = max(2, 4 * b.args.runs), max(2.0, b.args.seconds / 4)
    cpus = sorted(os.sched_getaffinity(0))
    pin = len(cpus) >= 2 and shutil.which("taskset") is not None
    api_cpu, load_cpus = ({cpus[-1]}, set(cpus[:-1])) if pin else (None, None)
    servers = []
    for k in range(processes):
        for role in ("on", "off") if k % 2 == 0 else ("off", "on"):  # who starts first, too
            on = role == "on" and not b.args.aa
            b.env["IRIS_DRIFT_ENABLED"] = "true" if on else "false"
            try:
                servers.append((role, k, *b.api_server(1, tag=f"-drift-{role}{k}")))
            finally:
                del b.env["IRIS_DRIFT_ENABLED"]
    body = json.dumps({"features": ROW})
    runs: dict[tuple[str, int], list[tuple[Load, float]]] = {}
    with ExitStack() as stack:
        procs: dict[tuple[str, int], tuple[str, subprocess.Popen[bytes]]] = {}
        for role, k, url, cm in servers:
            procs[(role, k)] = (url, stack.enter_context(cm))  # type: ignore[arg-type]
        for (role, _), (url, proc) in procs.items():
            wait_for(lambda url=url: answers(f"{url}/readyz"), 120, f"our API (drift {role})")
            if role == "on" and not b.args.aa:
                wait_for(
                    lambda url=url: (
                        "iris_api_drift_reference_loaded 1.0" in httpx.get(f"{url}/metrics").text
                    ),
                    60,
                    "the API to fetch the champion's reference profile",
                )
            if api_cpu:
                pin_process(proc.pid, api_cpu)
            wrk(f"{url}/predict", body, 2, cpus=load_cpus)  # warm up; fills the drift window
        for r in range(rounds):
            for k in range(processes):
                order = ("on", "off") if (r + k) % 2 == 0 else ("off", "on")
                for role in order:
                    url, proc = procs[(role, k)]
                    cpu0, n0 = cpu_seconds(proc.pid), served(url)
                    load = wrk(f"{url}/predict", body, seconds, cpus=load_cpus)
                    cpu1, n1 = cpu_seconds(proc.pid), served(url)
                    runs.setdefault((role, k), []).append(
                        (load, (cpu1 - cpu0) / max(n1 - n0, 1) * 1e6)
                    )
        measured = [url for (role, _), (url, _) in procs.items() if role == "on" and not b.args.aa]
        for url in measured:
            if "iris_api_feature_psi" not in httpx.get(f"{url}/metrics").text:
                raise SystemExit("bench: the API with drift statistics exports no PSI")
    ratios = [
        on[0].rps / off[0].rps - 1
        for k in range(processes)
        for on, off in zip(runs[("on", k)], runs[("off", k)], strict=True)
    ]
    q1, median, q3 = statistics.quantiles(ratios, n=4)
    by_role = {
        role: [run for (r, _), rs in runs.items() if r == role for run in rs]
        for role in ("on", "off")
    }
    return DriftCost(
        on=median_load([load for load, _ in by_role["on"]]),
        off=median_load([load for load, _ in by_role["off"]]),
        cost=median,
        cost_q1=q1,
        cost_q3=q3,
        cpu_on_us=statistics.median(cpu for _, cpu in by_role["on"]),
        cpu_off_us=statistics.median(cpu for _, cpu in by_role["off"]),
        pairs=len(ratios),
        processes=processes,
        rounds=rounds,
        seconds=seconds,
        pinned=pin,
        aa=b.args.aa,
    )


def pin_process(pid: int, cpus: set[int]) -> None:
    """Every thread of a process (the API: event loop, alias watcher, drift tick) on ``cpus``."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with suppress(ProcessLookupError):  # a thread that just ended
            os.sched_setaffinity(int(tid), cpus)


def rss_mib(root_pid: int) -> float:
    """Resident memory of a process and its children (the API's workers), MiB."""
    return sum(process_rss_mib(root_pid).values())


def process_rss_mib(root_pid: int) -> dict[int, float]:
    """pid → resident memory, MiB, of a process and its children (the API's workers)."""
    rss = {}
    pids = [root_pid]
    children = Path(f"/proc/{root_pid}/task/{root_pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss[pid] = int(line.split()[1]) / 1024
        except FileNotFoundError:
            pass
    return rss


def swap_under_load(
    b: Bench, url: str, cache: Path, body: str, swaps: bool = True
) -> tuple[Any, Any, str, str]:
    """(steady load, load during two promotions, version before, version after) on our API.

    ``swaps=False``: the API at ``url`` does not watch the alias (the control: the promotions'
    own cost, MLflow's server and the bench's client on the same cores, without a swap)."""
    seconds = b.args.seconds
    baseline = wrk(f"{url}/predict", body, seconds)

    def promote_twice() -> None:
        for _ in range(2):
            time.sleep(seconds / 4)
            for cached in cache.glob("*.onnx"):  # so each promotion really downloads
                cached.unlink()
            b.promote_again()

    promoting = threading.Thread(target=promote_twice)
    before_swap = httpx.get(f"{url}/model").json()["version"]
    promoting.start()
    during = wrk(f"{url}/predict", body, seconds)
    promoting.join()
    if not swaps:
        return baseline, during, before_swap, before_swap
    seen: set[str] = set()  # each answer comes from one of the workers

    def swapped() -> bool:
        seen.add(httpx.get(f"{url}/model").json()["version"])
        return len(seen - {before_swap}) > 0

    wait_for(swapped, 30, "the API to serve the promoted version")
    return baseline, during, before_swap, max(seen - {before_swap}, key=int)


def control_api(b: Bench) -> tuple[str, object]:
    """The swap row's control: an API (2 workers) that does not watch the alias."""
    return b.api_server(2, b.home / "control-graphs", "-control", poll_s=3600)


def only_swap(b: Bench) -> None:
    """``--only-swap``: the swap row alone, ``--runs`` times on one API (2 workers), each run
    beside a control: the same two promotions against an API that does not watch the alias."""
    cache = b.home / "bench-graphs"
    url, cm = b.api_server(2, cache)
    control_url, control_cm = control_api(b)
    body = json.dumps({"features": ROW})
    rows = []
    with cm, control_cm:  # type: ignore[attr-defined]
        for u in (url, control_url):
            wait_for(functools.partial(answers, f"{u}/readyz"), 120, "our API")
            wrk(f"{u}/predict", body, 2)  # warm up
        print(
            "\n| run | steady p99 ms | during two promotions, swapping | ratio | control: "
            "steady | control: during, no swap | control ratio | swapping ÷ control | errors |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for i in range(b.args.runs):
            baseline, during, _, _ = swap_under_load(b, url, cache, body)
            c_base, c_during, _, _ = swap_under_load(b, control_url, cache, body, swaps=False)
            rows.append(
                (during.p99 / baseline.p99, c_during.p99 / c_base.p99, during.p99 / c_during.p99)
            )
            print(
                f"| {i + 1} | {baseline.p99:.1f} | {during.p99:.1f} | {rows[-1][0]:.2f}x | "
                f"{c_base.p99:.1f} | {c_during.p99:.1f} | {rows[-1][1]:.2f}x | "
                f"{rows[-1][2]:.2f}x | {during.errors} |"
            )
    medians = [statistics.median(r[k] for r in rows) for k in range(3)]
    print(
        f"\nmedians over {len(rows)} runs: swapping {medians[0]:.2f}x its steady p99; the "
        f"control (promotions, no swap) {medians[1]:.2f}x; swapping ÷ control {medians[2]:.2f}x"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="wrk runs per server (median)")
    parser.add_argument("--seconds", type=float, default=10, help="length of one wrk run")
    parser.add_argument("--soak", type=float, default=120, help="memory soak length, seconds")
    parser.add_argument("--cli-runs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="1 run of 5 s, 20 s soak")
    parser.add_argument(
        "--only-drift", action="store_true", help="only the input-drift bookkeeping row"
    )
    parser.add_argument("--only-swap", action="store_true", help="only the swap row, --runs times")
    parser.add_argument(
        "--aa",
        action="store_true",
        help="A/A check of the drift row: bookkeeping off in both roles (the measurement's noise)",
    )
    args = parser.parse_args()
    if args.quick:
        args.runs, args.seconds, args.soak, args.cli_runs = 1, 5, 20, 3
    if not shutil.which("wrk"):
        raise SystemExit("bench: wrk is needed: sudo apt-get install wrk (or `make bench`)")

    b = Bench(args)
    print(f"bench: IRISCTL_HOME={b.home}", file=sys.stderr)
    try:
        t0 = time.perf_counter()
        up = json.loads(b.irisctl("up", "--json").stdout)
        up_wall = time.perf_counter() - t0
        if args.only_swap:
            only_swap(b)
            return 0
        print("bench: input-drift bookkeeping on and off", file=sys.stderr)
        drift = drift_overhead(b)
        if args.only_drift:
            print("\n| measure | value |\n|---|---|")
            print_drift(drift)
            return 0
        cli = b.cli_timings()
        results: dict = {}
        floors: dict = {}
        for workers in (1, 2):
            print(f"bench: random forest, {workers} worker(s)", file=sys.stderr)
            load_servers(b, "random forest (100 trees)", workers, results, floors)
        rf_version = json.loads(b.irisctl("status", "--json").stdout)["model"]["version"]

        # Batch, swap and soak on our API with the forest, 2 workers.
        cache = b.home / "bench-graphs"
        url, cm = b.api_server(2, cache)
        with cm as api:  # type: ignore[attr-defined]
            wait_for(lambda: answers(f"{url}/readyz"), 120, "our API")
            batch = {"instances": [ROW] * 1000}
            with httpx.Client(timeout=30) as http:
                for _ in range(3):
                    http.post(f"{url}/predict", json=batch)
                samples = []
                for _ in range(20):
                    t = time.perf_counter()
                    assert http.post(f"{url}/predict", json=batch).status_code == 200
                    samples.append((time.perf_counter() - t) * 1000)
            batch_ms = statistics.median(samples)

            body = json.dumps({"features": ROW})
            baseline, during, before_swap, after_swap = swap_under_load(b, url, cache, body)
            # The control: the same promotions against an API that does not watch the alias.
            c_url, c_cm = control_api(b)
            with c_cm:  # type: ignore[attr-defined]
                wait_for(lambda: answers(f"{c_url}/readyz"), 120, "the control API")
                wrk(f"{c_url}/predict", body, 2)  # warm up
                c_base, c_during, _, _ = swap_under_load(b, c_url, cache, body, swaps=False)

            rss = [rss_mib(api.pid)]
            soak = threading.Thread(target=wrk, args=(f"{url}/predict", body, args.soak, 16))
            soak.start()
            while soak.is_alive():
                time.sleep(min(10, args.soak / 4))
                rss.append(rss_mib(api.pid))
            soak.join()
            per_worker = process_rss_mib(api.pid)
            per_worker.pop(api.pid, None)  # uvicorn's supervisor process holds no model

        print("bench: logistic regression", file=sys.stderr)
        lr_version = b.register_logistic_regression()
        for workers in (1, 2):
            load_servers(b, "logistic regression", workers, results)
    finally:
        b.irisctl("down", "--purge", "--yes", check=False)
        shutil.rmtree(b.home, ignore_errors=True)

    import mlflow
    import sklearn

    print(
        f"\n## irisctl benchmark — {platform.node()}: {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, MLflow {mlflow.__version__}, "
        f"scikit-learn {sklearn.__version__}"
    )
    print(
        f"wrk -t2 -c32, one-row POSTs, {args.runs} run(s) x {args.seconds:.0f} s per server "
        "(medians), loopback; champion v" + rf_version + " (forest), v" + lr_version + " (LR)\n"
    )
    print(
        "| model | workers | server | req/s | p50 ms | p90 ms | p99 ms | errors | "
        "req/s ratio | p99 ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for workers, floor in floors.items():
        print(
            f"| (HTTP floor: no model work) | {workers} | bench/floor.py | {floor.rps:,.0f} | "
            f"{floor.p50:.1f} | {floor.p90:.1f} | {floor.p99:.1f} | {floor.errors} | | |"
        )
    for (model, workers), (ours, theirs) in results.items():
        for name, r in (("irisctl API", ours), ("mlflow models serve", theirs)):
            ratio = (
                (f"**{ours.rps / theirs.rps:.1f}x**", f"**{ours.p99 / theirs.p99:.2f}**")
                if name == "irisctl API"
                else ("1.0x", "1.00")
            )
            print(
                f"| {model} | {workers} | {name} | {r.rps:,.0f} | {r.p50:.1f} | {r.p90:.1f} | "
                f"{r.p99:.1f} | {r.errors} | {ratio[0]} | {ratio[1]} |"
            )
    print("\n| measure | value |\n|---|---|")
    for (model, workers), (ours, _) in results.items():
        if workers in floors and model.startswith("random forest"):
            print(
                f"| forest, {workers} worker(s): our req/s ÷ the HTTP floor's | "
                f"{ours.rps / floors[workers].rps:.0%} |"
            )
    print(f"| batch of 1,000 rows, round trip (median of 20) | {batch_ms:.1f} ms |")
    print(
        f"| swap under load (v{before_swap} → v{after_swap}): errors / p99 during two "
        "promotions vs without | "
        f"{during.errors} / {during.p99:.1f} ms vs {baseline.p99:.1f} ms "
        f"({during.p99 / baseline.p99:.2f}x) |"
    )
    print(
        "| the control: the same two promotions, API not watching the alias: p99 during vs "
        f"without | {c_during.p99:.1f} ms vs {c_base.p99:.1f} ms "
        f"({c_during.p99 / c_base.p99:.2f}x); swapping ÷ control {during.p99 / c_during.p99:.2f}x |"
    )
    print(
        f"| API RSS over a {args.soak:.0f} s soak (2 workers), start → end (max) | "
        f"{rss[0]:.0f} → {rss[-1]:.0f} MiB ({max(rss):.0f}) |"
    )
    workers_rss = ", ".join(f"{v:.0f}" for v in per_worker.values())
    print(f"| RSS per API worker after the soak | {workers_rss} MiB |")
    print_drift(drift)
    for name, ms in cli.items():
        print(f"| `{name}` (median of {args.cli_runs}) | {ms:.0f} ms |")
    print(
        f"| `irisctl --help` ÷ `import typer, rich` | "
        f"{cli['irisctl --help'] / cli[next(iter(cli))]:.2f}x |"
    )
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in up["timings"].items())
    print(f"| `irisctl up` (cold, first model) | {up_wall:.1f} s wall ({steps}) |")
    return 0


def print_drift(d: DriftCost) -> None:
    how = (
        f"{d.processes} API processes per role, {d.rounds} rounds of {d.seconds:.0f} s runs, "
        f"each on/off pair back to back in alternating order"
        + (", API pinned to one core, wrk on the others" if d.pinned else "")
    )
    print(
        f"| input-drift bookkeeping, one-row requests at 1 worker, "
        f"{'A/A check: off / off' if d.aa else 'on / off'} ({how}) | "
        f"{d.on.rps:,.0f} / {d.off.rps:,.0f} req/s; median of {d.pairs} paired ratios "
        f"{d.cost * 100:+.1f} % (quartiles {d.cost_q1 * 100:+.1f} % … {d.cost_q3 * 100:+.1f} %); "
        f"API CPU {d.cpu_on_us:.0f} / {d.cpu_off_us:.0f} µs a request "
        f"({(d.cpu_on_us / d.cpu_off_us - 1) * 100:+.1f} %); "
        f"p99 {d.on.p99:.1f} / {d.off.p99:.1f} ms |"
    )


if __name__ == "__main__":
    sys.exit(main())
