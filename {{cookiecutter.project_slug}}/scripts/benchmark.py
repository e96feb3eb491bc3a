#!/usr/bin/env python3
"""Load-test the model server over loopback: requests/s, p50 and p99 latency, cold start, RSS.

Run from the project root, in the project's virtualenv, after ``make train-local``::

    scripts/benchmark.py --model-dir .local/opt_ml/model          # starts the server itself
    scripts/benchmark.py --url http://127.0.0.1:8080 --pid PID    # a server already running
    scripts/benchmark.py --model-dir .local/opt_ml/model --json   # the figures as JSON
    scripts/benchmark.py memory --workers 1,2,4 --load-seconds 60 # total PSS, large model
    scripts/benchmark.py cold-start --runs 5                      # start vs a bare load

The load comes from ``wrk`` (``apt-get install wrk``), with a small Lua script for the POST
bodies, one run per case after a short warm-up: ``GET /ping`` and ``POST /invocations`` with
a 1-row, a 100-row and a 10,000-row CSV, the rows taken from ``data/iris.csv`` (its first
column, the label, left out). With ``--model-dir`` the script also starts
``python -m {{ cookiecutter.package_name }} serve`` on a free port and measures its cold
start: spawn -> port bound (polling connect) -> first 200 on ``/ping`` -> first prediction;
then the RSS of every process of the server (from ``/proc``) after the load, and the rows/s
of the model's own ``predict`` called in this process on the already-parsed 10,000 rows,
beside the server's rows/s for the same rows.

``--load-generator python`` swaps wrk for a small built-in client (threads, keep-alive): it
needs nothing installed and checks that everything runs, but its figures measure Python's
HTTP client as much as the server. Do not quote them.

Two sub-commands measure what the load run does not (issue 14). ``memory`` trains a large
model with the project's own entry point (a forest of a few hundred deep trees on a
synthetic table, some hundred MB; ``--trees``/``--train-rows`` size it) and, for each worker
count, starts the server, waits until every worker has loaded it (its total PSS steady for
2 s and many /ping at once all 200), reads the total PSS of all its processes from
``/proc/PID/smaps_rollup``, loads ``/invocations`` from several clients for
``--load-seconds`` and reads it again; then checks the target "4 workers at most 1.3x the
PSS of 1". ``cold-start`` times, alternately and ``--runs`` times, the server's spawn ->
first /ping 200 and a bare ``python`` that imports the project's model module (and so its
framework) and calls ``model.load``: the median ratio against the target 1.25x, and the
latency of the first prediction sent right after that 200.

The functions are importable (the template's ``bench/compare.py`` drives other servers with
them); nothing here imports the project or any ML library until the in-process predict.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PACKAGE = "{{ cookiecutter.package_name }}"
PROJECT = Path(__file__).resolve().parents[1]
SAMPLE_DATA = PROJECT / "data" / "iris.csv"
PAYLOAD_ROWS = (1, 100, 10_000)
CASES = ("ping", *(str(rows) for rows in PAYLOAD_ROWS))
CSV = "text/csv"
STARTUP_TIMEOUT_SECONDS = 120.0
# Per request: long enough for a 10,000-row body behind a queue of others on a slow peer.
REQUEST_TIMEOUT_SECONDS = 30
PYTHON_LOAD_LABEL = "python (built-in client: checks that it runs, NOT for figures)"
# What each worker of this project's server logs once it accepts requests, with its model.
MODEL_LOADED = re.compile(rb"\[(\d+)\] \S+: worker accepting requests")

# wrk calls init() with the arguments after "--" (a body file, its content type) before it
# formats the request, and done() once at the end: one JSON line with what we report.
WRK_LUA = """\
function init(args)
  if args[1] then
    local f = assert(io.open(args[1], "rb"))
    wrk.body = f:read("*a")
    f:close()
    wrk.method = "POST"
    wrk.headers["Content-Type"] = args[2] or "text/csv"
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_JSON {\\"requests\\": %.0f, \\"duration_us\\": %.0f, \\"bytes\\": %.0f, " ..
    "\\"p50_us\\": %.0f, \\"p90_us\\": %.0f, \\"p99_us\\": %.0f, \\"max_us\\": %.0f, " ..
    "\\"errors\\": %.0f, \\"status_errors\\": %.0f}\\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""
WRK_MARKER = "BENCH_JSON "


@dataclass
class Case:
    """One load: a name, the request, and the rows each request carries (0 for /ping)."""

    name: str
    method: str
    path: str
    rows: int = 0
    body: bytes = b""
    content_type: str = CSV

    @property
    def label(self) -> str:
        return f"GET {self.path}" if self.method == "GET" else f"POST {self.rows}-row CSV"


@dataclass
class Result:
    """What one load run measured."""

    case: str
    label: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int = 0  # connect/read/write errors and timeouts
    status_errors: int = 0  # answers that were not 2xx/3xx
    rows: int = 0
    load_generator: str = "wrk"
    server_cpu_seconds: float | None = None  # user + system, every process of the server

    @property
    def cpu_ms_per_request(self) -> float | None:
        """The server's CPU time per answer: unlike requests/s, it hardly moves when other
        jobs share the machine, so it compares servers measured at different moments."""
        if self.server_cpu_seconds is None or not self.requests:
            return None
        return self.server_cpu_seconds * 1000 / self.requests

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def rows_per_second(self) -> float:
        return self.requests_per_second * self.rows

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "requests_per_second": round(self.requests_per_second, 1),
            "rows_per_second": round(self.rows_per_second, 1),
            "cpu_ms_per_request": _round(self.cpu_ms_per_request, 3),
        }


@dataclass
class ColdStart:
    """Seconds from spawning the server to each milestone (None: not reached)."""

    port_bound: float | None = None
    first_ping_200: float | None = None
    first_prediction: float | None = None


@dataclass
class Process:
    pid: int
    ppid: int
    name: str
    rss_kib: int
    cmdline: str = ""


@dataclass
class Memory:
    """The server's processes after the load: all of them, and those that serve requests."""

    processes: list[Process] = field(default_factory=list)
    roots: tuple[int, ...] = ()

    @property
    def total_mib(self) -> float:
        return sum(p.rss_kib for p in self.processes) / 1024

    @property
    def workers(self) -> list[Process]:
        return worker_processes(self.processes, self.roots)

    @property
    def per_worker_mib(self) -> float | None:
        workers = self.workers
        return sum(p.rss_kib for p in workers) / len(workers) / 1024 if workers else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "processes": [asdict(p) for p in self.processes],
            "workers": len(self.workers),
            "rss_per_worker_mib": _round(self.per_worker_mib),
            "rss_total_mib": round(self.total_mib, 1),
        }


# Payloads ---------------------------------------------------------------------------------


def feature_rows(path: Path = SAMPLE_DATA) -> list[str]:
    """The sample data's rows as CSV text, without their first column (the label)."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            rows.append(line.split(",", 1)[1])
    if not rows:
        raise ValueError(f"{path} has no rows")
    return rows


def csv_payload(rows: Sequence[str], count: int, header: str | None = None) -> bytes:
    """``count`` rows, the sample's rows over and over, one per line (and ``header`` first)."""
    lines = list(itertools.islice(itertools.cycle(rows), count))
    if header is not None:
        lines.insert(0, header)
    return ("\n".join(lines) + "\n").encode()


def parse_rows(rows: Sequence[str], count: int) -> list[list[float]]:
    """The same rows as ``csv_payload``, as numbers."""
    return [
        [float(value) for value in row.split(",")]
        for row in itertools.islice(itertools.cycle(rows), count)
    ]


def build_cases(
    names: Iterable[str], rows: Sequence[str], header: str | None = None
) -> list[Case]:
    """The cases named (``ping``, ``1``, ``100``, ``10000``), in that order."""
    cases = []
    for name in names:
        if name == "ping":
            cases.append(Case("ping", "GET", "/ping"))
        elif name.isdigit() and int(name) > 0:
            count = int(name)
            body = csv_payload(rows, count, header)
            cases.append(Case(name, "POST", "/invocations", rows=count, body=body))
        else:
            raise ValueError(f"unknown case {name!r}: ping or a row count")
    return cases


# wrk --------------------------------------------------------------------------------------


def wrk_command(
    wrk: str,
    url: str,
    lua: Path,
    duration: float,
    connections: int,
    threads: int,
    body_file: Path | None = None,
    content_type: str = CSV,
) -> list[str]:
    command = [
        wrk,
        f"--threads={threads}",
        f"--connections={max(connections, threads)}",
        f"--duration={max(1, round(duration))}s",
        f"--timeout={REQUEST_TIMEOUT_SECONDS}s",
        f"--script={lua}",
        url,
    ]
    if body_file is not None:
        command += ["--", str(body_file), content_type]
    return command


def parse_wrk_output(text: str) -> dict[str, float]:
    """The figures our Lua ``done()`` printed (a line starting ``BENCH_JSON``)."""
    for line in text.splitlines():
        if line.startswith(WRK_MARKER):
            return json.loads(line[len(WRK_MARKER) :])
    raise ValueError(f"no {WRK_MARKER.strip()} line in wrk's output:\n{text}")


def wrk_result(case: Case, figures: Mapping[str, float]) -> Result:
    return Result(
        case=case.name,
        label=case.label,
        requests=int(figures["requests"]),
        seconds=figures["duration_us"] / 1e6,
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        errors=int(figures["errors"]),
        status_errors=int(figures["status_errors"]),
        rows=case.rows,
    )


def run_wrk(
    base_url: str,
    case: Case,
    duration: float,
    connections: int,
    threads: int,
    workdir: Path,
    wrk: str | None = None,
) -> Result:
    wrk = wrk or shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (or --load-generator python)")
    lua = workdir / "bench.lua"
    if not lua.exists():
        lua.write_text(WRK_LUA)
    body_file = None
    if case.method == "POST":
        body_file = workdir / f"body-{case.name}.csv"
        body_file.write_bytes(case.body)
    url = base_url + case.path
    command = wrk_command(
        wrk, url, lua, duration, connections, threads, body_file, case.content_type
    )
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr}{done.stdout}")
    return wrk_result(case, parse_wrk_output(done.stdout))


# The built-in load generator (not for figures) --------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of ``values`` (0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * pct // 100)))
    return ordered[int(rank) - 1]


def run_python_load(base_url: str, case: Case, duration: float, connections: int) -> Result:
    """``connections`` threads, each with one keep-alive connection, for ``duration`` s."""
    parts = urllib.parse.urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    headers = {"Content-Type": case.content_type} if case.method == "POST" else {}
    latencies: list[float] = []
    failures = [0, 0]  # [errors, status errors]
    lock = threading.Lock()
    deadline = time.monotonic() + duration

    def client() -> None:
        mine: list[float] = []
        errors = status_errors = 0
        connection = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT_SECONDS)
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                connection.request(case.method, case.path, body=case.body or None, headers=headers)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                errors += 1
                connection.close()
                continue
            mine.append(time.perf_counter() - started)
            if response.status >= 400:
                status_errors += 1
        connection.close()
        with lock:
            latencies.extend(mine)
            failures[0] += errors
            failures[1] += status_errors

    started = time.monotonic()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(max(1, connections))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Result(
        case=case.name,
        label=case.label,
        requests=len(latencies),
        seconds=time.monotonic() - started,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        errors=failures[0],
        status_errors=failures[1],
        rows=case.rows,
        load_generator="python",
    )


def run_load(
    base_url: str,
    case: Case,
    seconds: float,
    connections: int,
    threads: int,
    load_generator: str,
    workdir: Path,
) -> Result:
    """One run of ``case`` for ``seconds``: by wrk (threads, a Lua script in ``workdir``) or
    by the built-in client."""
    if load_generator == "wrk":
        return run_wrk(base_url, case, seconds, connections, threads, workdir)
    return run_python_load(base_url, case, seconds, connections)


def run_cases(
    base_url: str,
    cases: Sequence[Case],
    duration: float,
    connections: int,
    threads: int,
    warmup: float = 1.0,
    load_generator: str = "wrk",
    progress: Callable[[str], None] | None = None,
    server_roots: Sequence[int] = (),
) -> list[Result]:
    """Each case: a warm-up (not counted), then the measured run; with ``server_roots``, the
    CPU time of those processes and their descendants during the measured run too."""
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for case in cases:
            for seconds, measured in ((warmup, False), (duration, True)):
                if seconds <= 0:
                    continue
                # The server's processes now (workers may have been replaced since the last run).
                pids = []
                if measured and server_roots:
                    pids = [p.pid for p in process_tree(server_roots, read_processes())]
                used_before = cpu_seconds(pids)
                result = run_load(
                    base_url, case, seconds, connections, threads, load_generator, Path(tmp)
                )
                if pids:
                    result.server_cpu_seconds = cpu_seconds(pids) - used_before
                if measured:
                    results.append(result)
                    if progress:
                        progress(f"{case.label}: {result.requests_per_second:,.0f} req/s")
    return results


# Starting the server and its cold start ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.25):
            return True
    except OSError:
        return False


def http_status(
    base_url: str, method: str, path: str, body: bytes | None = None, content_type: str = CSV
) -> int | None:
    """The status of one request on a new connection (None when there is no answer)."""
    parts = urllib.parse.urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=2)
    try:
        headers = {"Content-Type": content_type} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def measure_cold_start(
    command: Sequence[str],
    env: Mapping[str, str],
    port: int,
    probe: Case | None = None,
    cwd: Path | None = None,
    log: Path | None = None,
    timeout: float = STARTUP_TIMEOUT_SECONDS,
) -> tuple[subprocess.Popen[bytes], ColdStart]:
    """Start ``command`` (a new session) and time it to its port, /ping 200 and a prediction.

    The port is polled with connect() every millisecond, then /ping and then ``probe`` (a
    1-row POST) every 5 ms, each on a new connection. Returns the running process.
    """
    base_url = f"http://127.0.0.1:{port}"
    output = log.open("wb") if log else subprocess.DEVNULL
    started = time.perf_counter()
    process = subprocess.Popen(
        list(command),
        env=dict(env),
        cwd=cwd,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    if log:
        output.close()  # the child has its own copy
    cold = ColdStart()
    deadline = started + timeout

    def wait(condition: Callable[[], bool], pause: float) -> float:
        while not condition():
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode} while starting")
            if time.perf_counter() > deadline:
                stop(process)
                raise TimeoutError(f"the server was not ready within {timeout:.0f} s")
            time.sleep(pause)
        return time.perf_counter() - started

    cold.port_bound = wait(lambda: port_open(port), 0.001)
    cold.first_ping_200 = wait(lambda: http_status(base_url, "GET", "/ping") == 200, 0.005)
    if probe is not None:
        cold.first_prediction = wait(
            lambda: http_status(base_url, probe.method, probe.path, probe.body) == 200, 0.005
        )
    return process, cold


def wait_for_loaded_workers(
    log: Path,
    workers: int,
    process: subprocess.Popen[bytes],
    timeout: float = STARTUP_TIMEOUT_SECONDS,
) -> None:
    """Until ``workers`` processes of this project's server have logged that they accept
    requests, each with its model (the server then answers /ping 200 from every worker;
    the log also tells the worker PIDs apart from the master's).
    """
    deadline = time.monotonic() + timeout
    while len(set(MODEL_LOADED.findall(log.read_bytes()))) < workers:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} while loading")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{workers} workers did not load the model within {timeout:.0f} s")
        time.sleep(0.05)


def wait_until_warm(base_url: str, probe: Case, quick: int = 10, timeout: float = 120.0) -> None:
    """Until ``quick`` rounds in a row, each a ``/ping`` and ``probe`` on new connections,
    are answered 200 within 1 s.

    With several workers a new connection may reach one whose model is still loading: its
    ``/ping`` says 503, while a prediction would wait for the model and succeed.
    """
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < quick:
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not answer /ping and predictions steadily")
        begun = time.monotonic()
        ok = (
            http_status(base_url, "GET", "/ping") == 200
            and http_status(base_url, probe.method, probe.path, probe.body) == 200
        )
        streak = streak + 1 if ok and time.monotonic() - begun < 1 else 0
        if not ok:
            time.sleep(0.05)


def stop(process: subprocess.Popen[bytes], grace: float = 30.0) -> int | None:
    """SIGTERM to the server (as SageMaker stops it), then SIGKILL to what is left of its
    process group after it exits or after ``grace`` s."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    return process.wait()


def serve_environment(model_dir: Path, base: Path, port: int, workers: int) -> dict[str, str]:
    """``SAGEMAKER_BASE_DIR`` laid out with ``model`` -> ``model_dir``, as the container has."""
    base.mkdir(parents=True, exist_ok=True)
    link = base / "model"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(model_dir.resolve(), target_is_directory=True)
    return {
        **os.environ,
        "SAGEMAKER_BASE_DIR": str(base),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
    }


def start_server(
    model_dir: Path, base: Path, workers: int, probe: Case, log: Path | None = None
) -> tuple[subprocess.Popen[bytes], ColdStart, str]:
    """``python -m PACKAGE serve`` on ``model_dir`` (linked from the scratch dir ``base``)
    and a free port, timed to its first prediction, and then left until every worker has
    loaded the model: the process, its cold start, and its URL. The server's output goes to
    ``log``, else to ``base/serve.log``."""
    port = free_port()
    env = serve_environment(model_dir, base, port, workers)
    log = log or base / "serve.log"
    command = [sys.executable, "-m", PACKAGE, "serve"]
    process, cold = measure_cold_start(command, env, port, probe, log=log)
    try:
        wait_for_loaded_workers(log, workers, process)
    except BaseException:
        stop(process)
        raise
    return process, cold, f"http://127.0.0.1:{port}"


# Memory -----------------------------------------------------------------------------------


def parse_status(text: str) -> tuple[str, int, int]:
    """(name, parent pid, VmRSS in KiB) from the text of ``/proc/PID/status``."""
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    rss = fields.get("VmRSS", "0 kB").split()[0]
    return fields.get("Name", "?"), int(fields.get("PPid", "0")), int(rss)


def read_processes(proc: Path = Path("/proc")) -> dict[int, Process]:
    found = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name, ppid, rss = parse_status((entry / "status").read_text())
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, ValueError):
            continue  # gone meanwhile, or a kernel thread
        found[int(entry.name)] = Process(int(entry.name), ppid, name, rss, cmdline)
    return found


def cpu_seconds(pids: Iterable[int], proc: Path = Path("/proc")) -> float:
    """User + system CPU seconds the processes have used so far (those gone count 0)."""
    ticks = 0
    for pid in pids:
        try:
            stat = (proc / str(pid) / "stat").read_text()
        except OSError:
            continue
        # After the ")" that ends the command name: state is field 3, utime 14, stime 15.
        fields = stat.rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def process_tree(roots: Iterable[int], processes: Mapping[int, Process]) -> list[Process]:
    """``roots`` and all their descendants, parents before children."""
    children: dict[int, list[int]] = {}
    for process in processes.values():
        children.setdefault(process.ppid, []).append(process.pid)
    tree, queue, seen = [], [r for r in roots if r in processes], set()
    while queue:
        pid = queue.pop(0)
        if pid in seen:
            continue
        seen.add(pid)
        tree.append(processes[pid])
        queue.extend(sorted(children.get(pid, [])))
    return tree


# Helpers a server starts beside its workers, which hold no model.
HELPERS = ("resource_tracker", "semaphore_tracker", "forkserver")


def worker_processes(tree: Sequence[Process], roots: Iterable[int] = ()) -> list[Process]:
    """The processes that serve requests: Python processes without children (the leaves).

    A supervisor (uvicorn's, gunicorn's master, Java's front end) has children, and so is
    no worker; nor are nginx and multiprocessing's helpers. A root (a process started to
    run the server) counts only when there is no other: a server of one process.
    """
    parents = {p.ppid for p in tree}
    workers = [
        p
        for p in tree
        if p.pid not in parents
        and "python" in (p.name + p.cmdline.split(" ", 1)[0]).lower()
        and not any(helper in p.cmdline for helper in HELPERS)
    ]
    started = set(roots)
    return [p for p in workers if p.pid not in started] or workers


def memory(roots: Iterable[int]) -> Memory:
    roots = tuple(roots)
    return Memory(process_tree(roots, read_processes()), roots)


# In-process predict -----------------------------------------------------------------------


def inprocess_rows_per_second(
    model_dir: Path, rows: Sequence[Sequence[float]], min_seconds: float = 1.0
) -> float:
    """Rows/s of the project's ``model.predict`` on an already-parsed array, in this process."""
    import numpy as np

    module = __import__(f"{PACKAGE}.model", fromlist=["load", "predict"])
    model = module.load(Path(model_dir))
    features = np.asarray(rows, dtype=np.float64)
    module.predict(model, features)  # warm: first-call costs are not the steady state
    calls, started = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - started < min_seconds:
        module.predict(model, features)
        calls += 1
    return calls * len(features) / (time.perf_counter() - started)


# Report -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """CPU model, cores and load average of this machine (from /proc, where there is one)."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        load = list(os.getloadavg())
    return {"cpu": model, "cores": os.cpu_count(), "loadavg": load}


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f} ms"


def format_results(results: Sequence[Result]) -> str:
    """The load figures as a plain table."""
    header = ("case", "req/s", "rows/s", "p50 ms", "p99 ms", "CPU ms/req", "errors")
    lines = [header]
    for r in results:
        cpu = r.cpu_ms_per_request
        lines.append(
            (
                r.label,
                f"{r.requests_per_second:,.0f}",
                f"{r.rows_per_second:,.0f}" if r.rows else "-",
                f"{r.p50_ms:.2f}",
                f"{r.p99_ms:.2f}",
                "-" if cpu is None else f"{cpu:.2f}",
                str(r.errors + r.status_errors),
            )
        )
    return table(lines)


def table(lines: Sequence[Sequence[str]]) -> str:
    """Left-aligned first column, right-aligned others, two spaces between."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for line in lines:
        cells = [line[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def format_report(report: Mapping[str, Any], results: Sequence[Result]) -> str:
    info = report["machine"]
    load = report["options"]
    lines = [
        f"server: {report['url']}",
        f"machine: {info['cpu']}, {info['cores']} cores, load average {info['loadavg'][0]:.2f}",
        f"load: {report['load_generator']}, {load['duration']:g} s per case after "
        f"{load['warmup']:g} s warm-up, {load['connections']} connections, "
        f"{load['threads']} thread(s)",
        "",
        format_results(results),
    ]
    cold = report.get("cold_start")
    if cold:
        lines += [
            "",
            f"cold start: port bound {_ms(cold['port_bound'])}, first 200 on /ping "
            f"{_ms(cold['first_ping_200'])}, first prediction {_ms(cold['first_prediction'])}",
        ]
    rss = report.get("memory")
    if rss:
        per_worker = rss["rss_per_worker_mib"]
        shown = "-" if per_worker is None else f"{per_worker:,.1f} MiB"
        lines.append(
            f"RSS: {shown} per worker ({rss['workers']} workers), "
            f"{rss['rss_total_mib']:,.1f} MiB in all {len(rss['processes'])} processes"
        )
    inprocess = report.get("inprocess")
    if inprocess:
        ratio = inprocess["server_over_inprocess"]
        lines.append(
            f"in-process predict on {inprocess['rows']:,} parsed rows: "
            f"{inprocess['rows_per_second']:,.0f} rows/s; the server: "
            f"{inprocess['server_rows_per_second']:,.0f} rows/s"
            + (f" ({ratio:.2f}x in-process)" if ratio is not None else "")
        )
    return "\n".join(lines)


# Total PSS, and the memory and cold-start sub-commands ------------------------------------

SUBCOMMANDS = ("memory", "cold-start")
# Issue 14's targets: total PSS with 4 workers over that with 1; a server's cold start over
# a bare Python process that imports the framework and loads the same model.
MEMORY_TARGET = 1.3
COLD_START_TARGET = 1.25
# The hyperparameters that count trees, and the rest that make the large model: a forest of
# deep trees (scikit-learn), or boosted rounds where the framework names them so.
TREE_COUNTS = ("n_estimators", "num_round", "num_iterations", "num_boost_round")
SYNTHETIC_CLASSES = 3
BARE_LOAD = (
    "import sys\n"
    "from pathlib import Path\n"
    "from {package} import model\n"
    "model.load(Path(sys.argv[1]))\n"
    "print('loaded', flush=True)\n"
)
HYPERPARAMETER_DEFAULTS = (
    "import dataclasses, json\n"
    "from {package}.model import Hyperparameters\n"
    "fields = dataclasses.fields(Hyperparameters)\n"
    "print(json.dumps(dict((f.name, f.default) for f in fields), default=str))\n"
)


@dataclass
class Pss:
    """The proportional set size of a server, summed over all its processes: shared pages
    count once in all (each process is charged its share), so unlike summed RSS it shows
    what sharing a model between workers saves."""

    total_kib: int
    processes: int
    unreadable: int = 0  # processes whose smaps_rollup could not be read (gone, or denied)

    @property
    def total_mib(self) -> float:
        return self.total_kib / 1024


def read_pss_kib(pid: int, proc: Path = Path("/proc")) -> int | None:
    """``Pss:`` of ``/proc/PID/smaps_rollup`` in KiB (None when it cannot be read)."""
    try:
        text = (proc / str(pid) / "smaps_rollup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return None


def total_pss(roots: Iterable[int], proc: Path = Path("/proc")) -> Pss:
    """The PSS of ``roots`` and every descendant: supervisor, workers, helpers, nginx."""
    tree = process_tree(roots, read_processes(proc))
    total = unreadable = 0
    for process in tree:
        kib = read_pss_kib(process.pid, proc)
        if kib is None:
            unreadable += 1
        else:
            total += kib
    return Pss(total, len(tree), unreadable)


def pings_all_ok(base_url: str, connections: int) -> bool:
    """``connections`` GET /ping at once, each on its own new connection: all 200?"""
    statuses: list[int | None] = []

    def one() -> None:
        statuses.append(http_status(base_url, "GET", "/ping"))

    threads = [threading.Thread(target=one, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(statuses) == connections and all(status == 200 for status in statuses)


def settled(samples: Sequence[tuple[float, int]], now: float, seconds: float) -> bool:
    """Whether the PSS samples (time, KiB) cover the last ``seconds`` and did not grow in
    them by more than 1% (at least 1 MiB)."""
    if not samples or samples[0][0] > now - seconds:
        return False
    window = [kib for at, kib in samples if at >= now - seconds]
    return max(window) - min(window) <= max(1024, max(window) // 100)


def wait_until_loaded(
    base_url: str,
    roots: Sequence[int],
    process: subprocess.Popen[bytes] | None,
    connections: int,
    stable_seconds: float = 2.0,
    timeout: float = STARTUP_TIMEOUT_SECONDS,
) -> float:
    """Until every worker holds the model: the server's total PSS has stopped growing for
    ``stable_seconds`` and ``connections`` /ping at once all answer 200. Seconds waited.

    Neither the log nor a single /ping can tell on every server design: whether each
    worker loads its own copy, or the model is loaded once before the workers are forked.
    """
    started = time.monotonic()
    samples: list[tuple[float, int]] = []
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} while loading")
        now = time.monotonic()
        if now - started > timeout:
            raise TimeoutError(f"the server's memory did not settle within {timeout:.0f} s")
        samples.append((now, total_pss(roots).total_kib))
        if settled(samples, now, stable_seconds) and pings_all_ok(base_url, connections):
            return time.monotonic() - started
        time.sleep(0.25)


def directory_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def synthetic_rows(rows: int, features: int, seed: int = 0) -> list[str]:
    """``rows`` CSV lines, a random label (``c0``...) then ``features`` random numbers: noise,
    so that trees grow deep (a leaf per few rows) and the model large."""
    import random

    rng = random.Random(seed)  # noqa: S311 (a table of noise, not secrets)
    return [
        f"c{rng.randrange(SYNTHETIC_CLASSES)},"
        + ",".join(f"{rng.gauss(0, 1):.4f}" for _ in range(features))
        for _ in range(rows)
    ]


def large_model_hyperparameters(
    defaults: Mapping[str, Any], trees: int, max_depth: int | None
) -> dict[str, str]:
    """hyperparameters.json for the large model, from the names ``model.Hyperparameters``
    declares (their defaults in ``defaults``)."""
    count = next((name for name in TREE_COUNTS if name in defaults), None)
    if count is None:
        raise SystemExit(
            "this project's model has no tree count among its hyperparameters "
            f"({', '.join(TREE_COUNTS)}): pass --model-dir with a large model"
        )
    values = {count: str(trees)}
    if "max_depth" in defaults:
        if max_depth:
            values["max_depth"] = str(max_depth)
        else:  # no limit: scikit-learn says null, the boosters 0
            values["max_depth"] = "null" if defaults["max_depth"] is None else "0"
    if "checkpoint_every" in defaults:
        values["checkpoint_every"] = str(trees)  # one checkpoint, not one per 10 trees
    if "validation_fraction" in defaults:
        values["validation_fraction"] = "0"
    return values


def build_large_model(
    work: Path, rows: Sequence[str], trees: int, max_depth: int | None, log: Path
) -> Path:
    """Train the large model with the project's own entry point (``python -m PACKAGE
    train``) on ``rows`` as its training channel, in ``work``; its model directory."""
    defaults = json.loads(
        subprocess.run(
            [sys.executable, "-c", HYPERPARAMETER_DEFAULTS.format(package=PACKAGE)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    base = work / "opt_ml"
    (base / "input" / "config").mkdir(parents=True, exist_ok=True)
    (base / "input" / "data" / "training").mkdir(parents=True, exist_ok=True)
    hyperparameters = large_model_hyperparameters(defaults, trees, max_depth)
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (base / "input" / "data" / "training" / "synthetic.csv").write_text("\n".join(rows) + "\n")
    with log.open("wb") as output:
        done = subprocess.run(
            [sys.executable, "-m", PACKAGE, "train"],
            env={**os.environ, "SAGEMAKER_BASE_DIR": str(base)},
            stdout=output,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"training the large model failed ({done.returncode}): see {log}")
    return base / "model"


@dataclass
class MemoryRun:
    """One server, ``workers`` workers: its total PSS once loaded and after the load."""

    workers: int
    processes: int
    pss_loaded_mib: float
    pss_after_load_test_mib: float
    pss_peak_mib: float  # the most seen during the load (sampled every 0.5 s)
    settle_seconds: float  # from the first /ping 200 until every worker had loaded
    requests: int
    errors: int
    unreadable: int = 0


def memory_run(
    model_dir: Path,
    workers: int,
    payload: Case,
    load_seconds: float,
    clients: int,
    load_generator: str,
    scratch: Path,
    stable_seconds: float = 2.0,
) -> MemoryRun:
    """Start the server with ``workers`` workers, read its total PSS once every worker has
    loaded the model, load it with ``payload`` from ``clients`` clients for
    ``load_seconds``, and read it again."""
    port = free_port()
    base = scratch / f"opt_ml-{workers}"
    env = serve_environment(model_dir, base, port, workers)
    command = [sys.executable, "-m", PACKAGE, "serve"]
    log = scratch / f"serve-{workers}-workers.log"
    process, _ = measure_cold_start(command, env, port, None, log=log)
    url = f"http://127.0.0.1:{port}"
    try:
        roots = [process.pid]
        settle = wait_until_loaded(url, roots, process, max(8, 4 * workers), stable_seconds)
        loaded = total_pss(roots)
        peak = [loaded.total_kib]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                peak.append(total_pss(roots).total_kib)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            work = scratch / f"load-{workers}"
            work.mkdir(exist_ok=True)
            result = run_load(url, payload, load_seconds, clients, 1, load_generator, work)
        finally:
            done.set()
            sampler.join()
        after = total_pss(roots)
        peak.append(after.total_kib)
    finally:
        stop(process)
    return MemoryRun(
        workers=workers,
        processes=loaded.processes,
        pss_loaded_mib=round(loaded.total_mib, 1),
        pss_after_load_test_mib=round(after.total_mib, 1),
        pss_peak_mib=round(max(peak) / 1024, 1),
        settle_seconds=round(settle, 2),
        requests=result.requests,
        errors=result.errors + result.status_errors,
        unreadable=max(loaded.unreadable, after.unreadable),
    )


def memory_target(runs: Sequence[MemoryRun]) -> tuple[bool, str] | None:
    """Issue 14's target, when 1 and 4 workers were measured: total PSS with 4 workers at
    most 1.3x that with 1, once loaded and after the load test alike."""
    by_workers = {run.workers: run for run in runs}
    one, four = by_workers.get(1), by_workers.get(4)
    if one is None or four is None:
        return None
    loaded = four.pss_loaded_mib / one.pss_loaded_mib
    after = four.pss_after_load_test_mib / one.pss_after_load_test_mib
    worst = max(loaded, after)
    return (
        worst <= MEMORY_TARGET,
        f"total PSS with 4 workers at most {MEMORY_TARGET}x that with 1: "
        f"{loaded:.2f}x once loaded ({four.pss_loaded_mib:,.0f} vs {one.pss_loaded_mib:,.0f} "
        f"MiB), {after:.2f}x after the load test ({four.pss_after_load_test_mib:,.0f} vs "
        f"{one.pss_after_load_test_mib:,.0f} MiB)",
    )


def format_memory(report: Mapping[str, Any]) -> str:
    runs = [MemoryRun(**run) for run in report["runs"]]
    model, options, info = report["model"], report["options"], report["machine"]
    lines = [
        f"machine: {info['cpu']}, {info['cores']} cores, load average {info['loadavg'][0]:.2f}",
        f"model: {model['dir']} ({model['mib']:,.1f} MiB on disk{model.get('built', '')})",
        f"load test: {options['load_seconds']:g} s of POST /invocations, "
        f"{options['request_rows']}-row CSV, {options['clients']} clients "
        f"({report['load_generator']})",
        "total PSS: every process of the server (from /proc/PID/smaps_rollup)",
        "",
    ]
    first = runs[0] if runs and runs[0].workers == 1 else None
    rows = [
        (
            "workers",
            "processes",
            "PSS after load",
            "PSS after load test",
            "peak",
            "ratio to 1 worker",
            "requests",
        )
    ]
    for run in runs:
        ratio = "-"
        if first is not None:
            ratio = (
                f"{run.pss_loaded_mib / first.pss_loaded_mib:.2f}x / "
                f"{run.pss_after_load_test_mib / first.pss_after_load_test_mib:.2f}x"
            )
        rows.append(
            (
                str(run.workers),
                str(run.processes),
                f"{run.pss_loaded_mib:,.1f} MiB",
                f"{run.pss_after_load_test_mib:,.1f} MiB",
                f"{run.pss_peak_mib:,.1f} MiB",
                ratio,
                f"{run.requests:,}",
            )
        )
    lines.append(table(rows))
    lines.append("(ratio: after load / after load test)")
    for run in runs:
        if run.errors:
            lines.append(f"WARNING {run.workers} workers: {run.errors} failed requests")
        if run.unreadable:
            lines.append(f"WARNING {run.workers} workers: {run.unreadable} processes unreadable")
    target = report.get("target")
    if target:
        lines += ["", ("PASS  " if target["passed"] else "FAIL  ") + target["check"]]
    return "\n".join(lines)


def memory_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="benchmark.py memory",
        description="Total PSS of the server (every process) once the model is loaded and "
        "after a load test, for several worker counts, with a large model.",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        help="serve this model (default: train a large one with the project's entry point)",
    )
    parser.add_argument("--workers", default="1,2,4", help="worker counts (default 1,2,4)")
    parser.add_argument(
        "--load-seconds", type=float, default=60, help="seconds of load per run (60)"
    )
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (4)")
    parser.add_argument("--request-rows", type=int, default=100, help="CSV rows per request (100)")
    parser.add_argument("--trees", type=int, default=300, help="trees of the large model (300)")
    parser.add_argument(
        "--train-rows",
        type=int,
        default=20_000,
        help="rows of the synthetic table it learns (20,000: about 300 MiB with 300 trees; "
        "the size grows with trees x rows)",
    )
    parser.add_argument("--features", type=int, default=4, help="features per row (4)")
    parser.add_argument("--max-depth", type=int, help="deepest a tree grows (no limit)")
    parser.add_argument(
        "--stable-seconds",
        type=float,
        default=2.0,
        help="loaded: total PSS has not grown for this long (2)",
    )
    parser.add_argument(
        "--load-generator",
        choices=("wrk", "python"),
        default="wrk" if shutil.which("wrk") else "python",
        help="wrk when installed, else the built-in client (PSS, not req/s, is measured)",
    )
    parser.add_argument("--keep", type=Path, help="keep the model and the logs in this folder")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    try:
        counts = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError:
        parser.error("--workers: comma-separated worker counts, e.g. 1,2,4")
    if not counts or min(counts) < 1 or args.load_seconds <= 0 or args.clients < 1:
        parser.error("--workers, --load-seconds and --clients must be positive")
    check_model_dir(parser, args.model_dir)
    say = (lambda text: None) if args.json else (lambda text: print(text, file=sys.stderr))
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        scratch = args.keep or Path(tmp)
        scratch.mkdir(parents=True, exist_ok=True)
        model_dir = args.model_dir
        model: dict[str, Any] = {}
        if model_dir is None:
            say(f"training {args.trees} trees on {args.train_rows:,} synthetic rows")
            started = time.perf_counter()
            data = synthetic_rows(args.train_rows, args.features)
            model_dir = build_large_model(
                scratch, data, args.trees, args.max_depth, scratch / "train.log"
            )
            model["built"] = (
                f", {args.trees} trees on {args.train_rows:,} x {args.features} synthetic "
                f"rows, trained in {time.perf_counter() - started:.0f} s"
            )
        model.update(dir=str(model_dir), mib=round(directory_mib(model_dir), 3))
        # Requests: rows of noise as wide as the model's (metadata.json), else --features.
        metadata = model_dir / "metadata.json"
        width = json.loads(metadata.read_text())["n_features"] if metadata.is_file() else None
        rows = [
            line.split(",", 1)[1]
            for line in synthetic_rows(args.request_rows, width or args.features, seed=1)
        ]
        payload = build_cases([str(args.request_rows)], rows)[0]
        runs = []
        for workers in sorted(set(counts)):
            say(f"{workers} workers: start, wait for every worker, {args.load_seconds:g} s load")
            runs.append(
                memory_run(
                    model_dir,
                    workers,
                    payload,
                    args.load_seconds,
                    args.clients,
                    args.load_generator,
                    scratch,
                    args.stable_seconds,
                )
            )
    target = memory_target(runs)
    report: dict[str, Any] = {
        "machine": machine(),
        "model": model,
        "load_generator": args.load_generator,
        "options": {
            "workers": sorted(set(counts)),
            "load_seconds": args.load_seconds,
            "clients": args.clients,
            "request_rows": args.request_rows,
        },
        "runs": [asdict(run) for run in runs],
        "target": target and {"passed": target[0], "check": target[1]},
    }
    print(json.dumps(report, indent=2) if args.json else format_memory(report))
    return 0


def timed_request(base_url: str, case: Case, timeout: float = 60) -> tuple[float, int | None]:
    """Seconds one request on a new connection took, and its status (None: no answer)."""
    parts = urllib.parse.urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    started = time.perf_counter()
    status = None
    try:
        headers = {"Content-Type": case.content_type} if case.method == "POST" else {}
        connection.request(case.method, case.path, body=case.body or None, headers=headers)
        response = connection.getresponse()
        response.read()
        status = response.status
    except (OSError, http.client.HTTPException):
        pass
    finally:
        connection.close()
    return time.perf_counter() - started, status


def bare_load_seconds(model_dir: Path, scratch: Path, timeout: float = 300) -> float:
    """Seconds from spawning a bare ``python`` to its ``model.load(model_dir)`` returning:
    the interpreter, the project's model module with its framework, and the model."""
    errors = scratch / "bare.err"
    with errors.open("wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-c", BARE_LOAD.format(package=PACKAGE), str(model_dir)],
            stdout=subprocess.PIPE,
            stderr=err,
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        seconds = time.perf_counter() - started
        process.stdout.close()
        process.wait(timeout=timeout)
    if line.strip() != b"loaded":
        raise RuntimeError(f"the bare load failed:\n{errors.read_text()[-3000:]}")
    return seconds


def server_cold_start(
    model_dir: Path, workers: int, probe: Case, scratch: Path, run: int
) -> dict[str, Any]:
    """One start of the server: seconds to its port and first /ping 200, and the latency
    of one prediction sent right after that 200."""
    port = free_port()
    env = serve_environment(model_dir, scratch / f"opt_ml-{run}", port, workers)
    command = [sys.executable, "-m", PACKAGE, "serve"]
    log = scratch / f"serve-{run}.log"
    process, cold = measure_cold_start(command, env, port, None, log=log)
    try:
        latency, status = timed_request(f"http://127.0.0.1:{port}", probe)
    finally:
        stop(process)
    return {
        "port_bound": cold.port_bound,
        "first_ping_200": cold.first_ping_200,
        "first_prediction_latency": latency,
        "first_prediction_status": status,
    }


def median(values: Sequence[float]) -> float:
    import statistics

    return statistics.median(values)


def format_cold_start(report: Mapping[str, Any]) -> str:
    info, options, summary = report["machine"], report["options"], report["summary"]
    lines = [
        f"machine: {info['cpu']}, {info['cores']} cores, load average {info['loadavg'][0]:.2f}",
        f"model: {report['model_dir']} ({report['model_mib']:,.2f} MiB on disk); "
        f"{options['runs']} runs of each, alternating; server with {options['workers']} "
        "worker(s)",
        "",
    ]
    rows = [("seconds", "median", "min", "max")]
    for key, label in (
        ("bare_load", "bare python: spawn -> import + model.load done"),
        ("port_bound", "server: spawn -> port bound"),
        ("first_ping_200", "server: spawn -> first 200 on /ping"),
        ("first_prediction_latency", "then the first prediction: its latency"),
    ):
        values = [run[key] for run in report["runs"]]
        rows.append((label, _ms(median(values)), _ms(min(values)), _ms(max(values))))
    lines.append(table(rows))
    lines += [
        "",
        ("PASS  " if summary["passed"] else "FAIL  ")
        + f"first /ping 200 within {COLD_START_TARGET}x of a bare import + load: "
        f"{_ms(summary['first_ping_200'])} vs {_ms(summary['bare_load'])} = "
        f"{summary['ratio']:.2f}x",
    ]
    failed = [r for r in report["runs"] if r["first_prediction_status"] != 200]
    if failed:
        lines.append(f"WARNING {len(failed)} first predictions were not answered 200")
    return "\n".join(lines)


def cold_start_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="benchmark.py cold-start",
        description="The server's spawn -> first /ping 200 against a bare Python process "
        "that imports the framework and loads the same model (model.load), alternating.",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=PROJECT / ".local" / "opt_ml" / "model",
        help="the model (default .local/opt_ml/model: make train-local)",
    )
    parser.add_argument("--runs", type=int, default=5, help="runs of each, for a median (5)")
    parser.add_argument("--workers", type=int, default=2, help="server workers (2)")
    parser.add_argument("--data", type=Path, default=SAMPLE_DATA, help="CSV rows (label first)")
    parser.add_argument("--keep", type=Path, help="keep the logs in this folder")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.workers < 1:
        parser.error("--runs and --workers must be positive")
    check_model_dir(parser, args.model_dir)
    say = (lambda text: None) if args.json else (lambda text: print(text, file=sys.stderr))
    probe = build_cases(["1"], feature_rows(args.data))[0]
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        scratch = args.keep or Path(tmp)
        scratch.mkdir(parents=True, exist_ok=True)
        bare_load_seconds(args.model_dir, scratch)  # not counted: warms the page cache
        for run in range(args.runs):
            say(f"run {run + 1} of {args.runs}")
            # Alternating which goes first: neither always finds the caches the other left.
            if run % 2 == 0:
                bare = bare_load_seconds(args.model_dir, scratch)
                server = server_cold_start(args.model_dir, args.workers, probe, scratch, run)
            else:
                server = server_cold_start(args.model_dir, args.workers, probe, scratch, run)
                bare = bare_load_seconds(args.model_dir, scratch)
            runs.append({"bare_load": bare, **server})
    bare_median = median([r["bare_load"] for r in runs])
    ping_median = median([r["first_ping_200"] for r in runs])
    ratio = ping_median / bare_median
    report = {
        "machine": machine(),
        "model_dir": str(args.model_dir),
        "model_mib": round(directory_mib(args.model_dir), 3),
        "options": {"runs": args.runs, "workers": args.workers},
        "runs": runs,
        "summary": {
            "bare_load": bare_median,
            "port_bound": median([r["port_bound"] for r in runs]),
            "first_ping_200": ping_median,
            "first_prediction_latency": median([r["first_prediction_latency"] for r in runs]),
            "ratio": round(ratio, 3),
            "passed": ratio <= COLD_START_TARGET,
        },
    }
    print(json.dumps(report, indent=2) if args.json else format_cold_start(report))
    return 0


# Command line -----------------------------------------------------------------------------


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that say which server to load (one started here, or one running) and
    how: workers, connections, threads, load generator, log and output."""
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="a server already running, e.g. http://127.0.0.1:8080")
    target.add_argument(
        "--model-dir", type=Path, help="start the project's server on this model directory"
    )
    parser.add_argument("--pid", type=int, help="with --url: the server's PID, for RSS")
    parser.add_argument("--workers", type=int, default=2, help="server workers (default 2)")
    parser.add_argument("--connections", type=int, default=16, help="open connections (16)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument(
        "--load-generator",
        choices=("wrk", "python"),
        default="wrk",
        help="wrk (default), or a built-in Python client that is NOT for figures",
    )
    parser.add_argument("--log", type=Path, help="with --model-dir: write the server's output")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")


def check_model_dir(parser: argparse.ArgumentParser, folder: Path | None) -> None:
    """A usage error unless ``folder`` (if given) is a directory."""
    if folder is not None and not folder.is_dir():
        parser.error(f"no model directory {folder} (make train-local writes one)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Sub-commands, each with its own --help: "
        + ", ".join(f"benchmark.py {name}" for name in SUBCOMMANDS)
        + " (issue 14: total PSS with 1, 2, 4 workers; cold start against a bare load).",
    )
    add_server_arguments(parser)
    parser.add_argument(
        "--inprocess-model-dir",
        type=Path,
        help="with --url: the model directory for the in-process predict figure",
    )
    parser.add_argument("--duration", type=float, default=10, help="seconds per case (10)")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds per case (2)")
    parser.add_argument(
        "--cases",
        default=",".join(CASES),
        help=f"comma-separated: ping and row counts (default {','.join(CASES)})",
    )
    parser.add_argument("--data", type=Path, default=SAMPLE_DATA, help="CSV rows (label first)")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.connections < 1 or args.threads < 1 or args.duration <= 0:
        parser.error("--workers, --connections, --threads and --duration must be positive")
    for folder in (args.model_dir, args.inprocess_model_dir):
        check_model_dir(parser, folder)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "memory":
        return memory_main(argv[1:])
    if argv and argv[0] == "cold-start":
        return cold_start_main(argv[1:])
    args = parse_args(argv)
    rows = feature_rows(args.data)
    cases = build_cases([c.strip() for c in args.cases.split(",") if c.strip()], rows)
    probe = build_cases(["1"], rows)[0]
    say = (lambda text: None) if args.json else (lambda text: print(text, file=sys.stderr))
    report: dict[str, Any] = {
        "machine": machine(),
        "load_generator": "wrk" if args.load_generator == "wrk" else PYTHON_LOAD_LABEL,
        "options": {
            "workers": args.workers,
            "duration": args.duration,
            "warmup": args.warmup,
            "connections": args.connections,
            "threads": args.threads,
        },
    }
    process = None
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        try:
            if args.model_dir is not None:
                say(f"starting python -m {PACKAGE} serve")
                process, cold, url = start_server(
                    args.model_dir, Path(tmp) / "opt_ml", args.workers, probe, args.log
                )
                report["cold_start"] = asdict(cold)
            else:
                url = args.url.rstrip("/")
            report["url"] = url
            wait_until_warm(url, probe)
            pid = process.pid if process else args.pid
            results = run_cases(
                url,
                cases,
                args.duration,
                args.connections,
                args.threads,
                args.warmup,
                args.load_generator,
                say,
                server_roots=[pid] if pid else [],
            )
            if pid:
                report["memory"] = memory([pid]).as_dict()
        finally:
            if process is not None:
                report["exit_code"] = stop(process)
    report["results"] = [r.as_dict() for r in results]
    model_dir = args.model_dir or args.inprocess_model_dir
    largest = max((r for r in results if r.rows), key=lambda r: r.rows, default=None)
    if model_dir is not None and largest is not None:
        say(f"in-process predict on {largest.rows} rows")
        inprocess = inprocess_rows_per_second(model_dir, parse_rows(rows, largest.rows))
        report["inprocess"] = {
            "rows": largest.rows,
            "rows_per_second": round(inprocess, 1),
            "server_rows_per_second": round(largest.rows_per_second, 1),
            "server_over_inprocess": _round(largest.rows_per_second / inprocess, 3),
        }
    report["machine"]["loadavg_after"] = machine()["loadavg"]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
