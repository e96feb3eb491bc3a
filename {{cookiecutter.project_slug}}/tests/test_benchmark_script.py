"""scripts/benchmark.py: its payloads, parsing and tables, and one real run of its cold-start
and /ping path against the project's server, with the built-in client (wrk may be absent)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from {{ cookiecutter.package_name }}.environment import Paths

from .support import N_FEATURES, SAMPLE_DATA

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"


def load_script() -> Any:
    spec = importlib.util.spec_from_file_location("benchmark_script", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


bench = load_script()


def test_feature_rows_drop_the_label() -> None:
    rows = bench.feature_rows(SAMPLE_DATA)
    assert len(rows) == len(SAMPLE_DATA.read_text().split())
    assert all(len(row.split(",")) == N_FEATURES for row in rows)
    first = SAMPLE_DATA.read_text().splitlines()[0]
    assert rows[0] == first.split(",", 1)[1]


def test_csv_payload_cycles_the_rows() -> None:
    rows = ["1,2", "3,4", "5,6"]
    assert bench.csv_payload(rows, 1) == b"1,2\n"
    assert bench.csv_payload(rows, 5) == b"1,2\n3,4\n5,6\n1,2\n3,4\n"
    assert bench.csv_payload(rows, 2, header="a,b") == b"a,b\n1,2\n3,4\n"
    assert bench.csv_payload(rows, 10_000).count(b"\n") == 10_000
    assert bench.parse_rows(rows, 4) == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [1.0, 2.0]]


def test_cases() -> None:
    cases = bench.build_cases(["ping", "1", "100"], ["1,2"])
    assert [(c.method, c.path, c.rows, c.label) for c in cases] == [
        ("GET", "/ping", 0, "GET /ping"),
        ("POST", "/invocations", 1, "POST 1-row CSV"),
        ("POST", "/invocations", 100, "POST 100-row CSV"),
    ]
    assert cases[2].body.count(b"\n") == 100
    assert bench.CASES == ("ping", "1", "100", "10000")
    with pytest.raises(ValueError, match="unknown case"):
        bench.build_cases(["pong"], ["1,2"])


def test_wrk_command() -> None:
    command = bench.wrk_command(
        "/usr/bin/wrk", "http://127.0.0.1:1/invocations", Path("b.lua"), 10, 16, 2, Path("x.csv")
    )
    assert command[0] == "/usr/bin/wrk"
    assert {"--threads=2", "--connections=16", "--duration=10s", "--script=b.lua"} <= set(command)
    assert command[-4:] == ["http://127.0.0.1:1/invocations", "--", "x.csv", "text/csv"]
    ping = bench.wrk_command("wrk", "http://h/ping", Path("b.lua"), 0.2, 1, 4)
    assert ping[-1] == "http://h/ping"
    assert "--duration=1s" in ping  # wrk counts whole seconds
    assert "--connections=4" in ping  # wrk needs a connection per thread


def test_the_lua_script_reports_what_we_parse() -> None:
    assert "function init(args)" in bench.WRK_LUA
    assert "function done(summary, latency, requests)" in bench.WRK_LUA
    assert bench.WRK_MARKER.strip() in bench.WRK_LUA
    for key in ("requests", "duration_us", "p50_us", "p99_us", "errors", "status_errors"):
        assert f'\\"{key}\\"' in bench.WRK_LUA


WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:8080/invocations
  1 threads and 16 connections
  40000 requests in 10.00s, 4.00MB read
Requests/sec:   4000.00
BENCH_JSON {"requests": 40000, "duration_us": 10000000, "bytes": 4000000, "p50_us": 3500, \
"p90_us": 5000, "p99_us": 12250, "max_us": 40000, "errors": 1, "status_errors": 2}
"""


def test_parse_wrk_output() -> None:
    figures = bench.parse_wrk_output(WRK_OUTPUT)
    assert figures["requests"] == 40000
    case = bench.build_cases(["100"], ["1,2"])[0]
    result = bench.wrk_result(case, figures)
    assert result.requests_per_second == pytest.approx(4000)
    assert result.rows_per_second == pytest.approx(400_000)
    assert (result.p50_ms, result.p99_ms) == (3.5, 12.25)
    assert (result.errors, result.status_errors) == (1, 2)
    assert result.as_dict()["rows_per_second"] == 400_000
    with pytest.raises(ValueError, match="BENCH_JSON"):
        bench.parse_wrk_output("Running 10s test\nsocket errors: connect 16\n")


def test_percentile() -> None:
    values = [float(v) for v in range(1, 101)]
    assert bench.percentile(values, 50) == 50
    assert bench.percentile(values, 99) == 99
    assert bench.percentile(values, 100) == 100
    assert bench.percentile([7.0], 99) == 7
    assert bench.percentile([], 50) == 0


def test_parse_status() -> None:
    text = "Name:\tpython3.12\nState:\tS (sleeping)\nPPid:\t41\nVmRSS:\t  123456 kB\n"
    assert bench.parse_status(text) == ("python3.12", 41, 123456)
    assert bench.parse_status("Name:\tkthreadd\nPPid:\t0\n") == ("kthreadd", 0, 0)


def process(pid: int, ppid: int, name: str, rss: int, cmdline: str = "") -> Any:
    return bench.Process(pid, ppid, name, rss, cmdline or name)


def test_workers_of_a_uvicorn_tree() -> None:
    processes = {
        p.pid: p
        for p in [
            process(1, 0, "init", 10),
            process(10, 1, "python", 50_000, "python -m pkg serve"),
            process(11, 10, "python", 9_000, "python -c from multiprocessing.resource_tracker"),
            process(12, 10, "python", 100_000, "python -c from multiprocessing.spawn import"),
            process(13, 10, "python", 120_000, "python -c from multiprocessing.spawn import"),
            process(20, 1, "bash", 3_000),
        ]
    }
    tree = bench.process_tree([10], processes)
    assert [p.pid for p in tree] == [10, 11, 12, 13]
    memory = bench.Memory(tree, roots=(10,))
    assert [p.pid for p in memory.workers] == [12, 13]
    assert memory.per_worker_mib == pytest.approx(110_000 / 1024)
    assert memory.total_mib == pytest.approx(279_000 / 1024)
    assert memory.as_dict()["workers"] == 2


def test_workers_under_java_and_nginx() -> None:
    toolkit = [
        process(30, 1, "python", 40_000, "python serve.py"),
        process(31, 1, "java", 300_000, "java com.amazonaws.ml.mms.ModelServer"),
        process(32, 31, "python3.12", 90_000, "python3.12 mms/model_service_worker.py"),
        process(33, 31, "python3.12", 90_000, "python3.12 mms/model_service_worker.py"),
    ]
    tree = bench.process_tree([30, 31], {p.pid: p for p in toolkit})
    assert [p.pid for p in bench.worker_processes(tree, roots=[30, 31])] == [32, 33]
    stack = [
        process(40, 1, "python", 40_000, "python -m pkg serve"),
        process(41, 40, "nginx", 5_000, "nginx: master process"),
        process(42, 41, "nginx", 4_000, "nginx: worker process"),
        process(43, 40, "gunicorn", 60_000, "python gunicorn master"),
        process(44, 43, "gunicorn", 80_000, "/venv/bin/python /venv/bin/gunicorn"),
    ]
    tree = bench.process_tree([40], {p.pid: p for p in stack})
    assert [p.pid for p in bench.worker_processes(tree, roots=[40])] == [44]
    alone = [process(50, 1, "python", 70_000, "python -m pkg serve")]
    assert [p.pid for p in bench.worker_processes(alone, roots=[50])] == [50]
    assert bench.process_tree([999], {}) == []


def sample_report() -> tuple[dict[str, Any], list[Any]]:
    results = [
        bench.Result("ping", "GET /ping", 50_000, 10.0, 0.31, 1.2),
        bench.Result(
            "10000",
            "POST 10000-row CSV",
            200,
            10.0,
            70.0,
            150.0,
            0,
            3,
            rows=10_000,
            server_cpu_seconds=9.5,
        ),
    ]
    report = {
        "url": "http://127.0.0.1:8080",
        "machine": {"cpu": "Some CPU", "cores": 2, "loadavg": [0.5, 0.4, 0.3]},
        "load_generator": "wrk",
        "options": {"duration": 10.0, "warmup": 2.0, "connections": 16, "threads": 1},
        "cold_start": {"port_bound": 0.12, "first_ping_200": 0.8, "first_prediction": 0.85},
        "memory": {
            "processes": [{}] * 3,
            "workers": 2,
            "rss_per_worker_mib": 95.25,
            "rss_total_mib": 230.0,
        },
        "inprocess": {
            "rows": 10_000,
            "rows_per_second": 400_000.0,
            "server_rows_per_second": 200_000.0,
            "server_over_inprocess": 0.5,
        },
    }
    return report, results


def test_cpu_seconds_read_from_proc(tmp_path: Path) -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    # utime and stime are fields 14 and 15; a command name may hold spaces and ")".
    fields = ["S", "1", *["0"] * 9, str(3 * ticks), str(ticks), *["0"] * 30]
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "stat").write_text(f"7 (odd) name) {' '.join(fields)}\n")
    assert bench.cpu_seconds([7], proc=tmp_path) == 4.0
    assert bench.cpu_seconds([7, 8], proc=tmp_path) == 4.0  # 8 has gone
    assert bench.cpu_seconds([os.getpid()]) > 0
    assert bench.Result("1", "x", 0, 1.0, 0, 0, server_cpu_seconds=1.0).cpu_ms_per_request is None


def test_table_and_report() -> None:
    report, results = sample_report()
    lines = bench.format_results(results).splitlines()
    assert lines[0].split() == [
        *("case", "req/s", "rows/s", "p50", "ms", "p99", "ms", "CPU", "ms/req", "errors")
    ]
    assert lines[1].split() == ["GET", "/ping", "5,000", "-", "0.31", "1.20", "-", "0"]
    assert lines[2].split()[3:] == ["20", "200,000", "70.00", "150.00", "47.50", "3"]
    assert len({len(line) for line in lines}) == 1  # aligned columns
    text = bench.format_report(report, results)
    assert "machine: Some CPU, 2 cores, load average 0.50" in text
    assert "port bound 120 ms, first 200 on /ping 800 ms, first prediction 850 ms" in text
    assert "RSS: 95.2 MiB per worker (2 workers), 230.0 MiB in all 3 processes" in text
    assert "400,000 rows/s; the server: 200,000 rows/s (0.50x in-process)" in text


def test_arguments(tmp_path: Path) -> None:
    args = bench.parse_args(["--model-dir", str(tmp_path)])
    assert (args.workers, args.load_generator, args.cases) == (2, "wrk", "ping,1,100,10000")
    wrong_ones = (
        ["--model-dir", str(tmp_path), "--url", "http://x"],
        [],
        ["--url", "u", "--workers", "0"],
        ["--model-dir", str(tmp_path / "missing")],
    )
    for wrong in wrong_ones:
        with pytest.raises(SystemExit):
            bench.parse_args(wrong)


def test_inprocess_predict(trained: Paths) -> None:
    rows = bench.parse_rows(bench.feature_rows(SAMPLE_DATA), 50)
    assert bench.inprocess_rows_per_second(trained.model, rows, min_seconds=0.01) > 0


def test_waits_for_every_worker_to_log_it_accepts_requests(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    loaded = "2026-01-01 00:00:00,000 INFO [{}] pkg.readiness: worker accepting requests\n"
    log.write_text(loaded.format(11) + loaded.format(11) + "INFO [12] pkg: loading\n")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(TimeoutError):  # one worker, logged twice, is not two
            bench.wait_for_loaded_workers(log, 2, sleeper, timeout=0.2)
        with log.open("a") as out:
            out.write(loaded.format(12))
        bench.wait_for_loaded_workers(log, 2, sleeper, timeout=5)
        with pytest.raises(TimeoutError):
            bench.wait_for_loaded_workers(log, 3, sleeper, timeout=0.2)
    finally:
        sleeper.kill()
        sleeper.wait()
    with pytest.raises(RuntimeError, match="exited"):
        bench.wait_for_loaded_workers(log, 3, sleeper, timeout=5)


def test_cold_start_and_ping_with_the_builtin_client(trained: Paths, tmp_path: Path) -> None:
    """The script's own path: start the server, time its start, load /ping, read its RSS."""
    log = tmp_path / "server.log"
    command = [sys.executable, str(SCRIPT), "--model-dir", str(trained.model), "--log", str(log)]
    command += ["--load-generator", "python", "--cases", "ping", "--json", "--workers", "2"]
    command += ["--duration", "0.5", "--warmup", "0", "--connections", "2", "--threads", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr + log.read_text()
    report = json.loads(done.stdout)
    assert "NOT for figures" in report["load_generator"]
    cold = report["cold_start"]
    assert 0 < cold["port_bound"] <= cold["first_ping_200"] <= cold["first_prediction"]
    # The load began only once both workers accepted requests, each with its model.
    assert len(set(bench.MODEL_LOADED.findall(log.read_bytes()))) == 2
    [ping] = report["results"]
    assert ping["label"] == "GET /ping"
    assert ping["requests"] > 0
    assert ping["errors"] == ping["status_errors"] == 0
    assert ping["cpu_ms_per_request"] > 0  # the server's processes, not this client's
    assert report["memory"]["workers"] >= 1
    assert report["memory"]["rss_per_worker_mib"] > 0
    assert report["exit_code"] == 0
    assert "inprocess" not in report  # no invocation case: nothing to compare it with


def test_total_pss_of_a_process_tree(tmp_path: Path) -> None:
    rollup = "55d0-7ffd ---p 00000000 00:00 0  [rollup]\nRss:  2048 kB\nPss:  1500 kB\n"
    for pid, ppid, pss in ((10, 1, rollup), (11, 10, rollup.replace("1500", "500")), (12, 10, "")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "status").write_text(f"Name:\tpython\nPPid:\t{ppid}\n")
        (tmp_path / str(pid) / "cmdline").write_text("python\0-m\0pkg\0serve")
        if pss:
            (tmp_path / str(pid) / "smaps_rollup").write_text(pss)
    assert bench.read_pss_kib(10, proc=tmp_path) == 1500
    assert bench.read_pss_kib(12, proc=tmp_path) is None
    pss = bench.total_pss([10], proc=tmp_path)
    assert (pss.total_kib, pss.processes, pss.unreadable) == (2000, 3, 1)
    mine = bench.total_pss([os.getpid()])
    assert mine.total_kib > 0
    assert mine.unreadable == 0


def test_settled_pss() -> None:
    rising = [(t / 4, 100_000 + 5_000 * t) for t in range(12)]
    assert not bench.settled(rising, now=2.75, seconds=2)
    steady = [(t / 4, 100_000 + (t % 2) * 500) for t in range(12)]
    assert bench.settled(steady, now=2.75, seconds=2)
    assert not bench.settled(steady[:4], now=0.75, seconds=2)  # not 2 s of samples yet


def test_large_model_hyperparameters() -> None:
    forest = {"n_estimators": 100, "max_depth": None, "checkpoint_every": 10}
    forest["validation_fraction"] = 0.2
    assert bench.large_model_hyperparameters(forest, 300, None) == {
        "n_estimators": "300",
        "max_depth": "null",
        "checkpoint_every": "300",
        "validation_fraction": "0",
    }
    booster = {"num_round": 100, "max_depth": 6}
    assert bench.large_model_hyperparameters(booster, 50, None) == {
        "num_round": "50",
        "max_depth": "0",
    }
    assert bench.large_model_hyperparameters(booster, 50, 12)["max_depth"] == "12"
    with pytest.raises(SystemExit, match="--model-dir"):
        bench.large_model_hyperparameters({"epochs": 30}, 300, None)
    rows = bench.synthetic_rows(5, 3)
    assert rows == bench.synthetic_rows(5, 3)  # seeded
    assert all(len(row.split(",")) == 4 and row.startswith("c") for row in rows)


def test_memory_target() -> None:
    def run(workers: int, loaded: float, after: float) -> Any:
        return bench.MemoryRun(workers, workers + 1, loaded, after, after, 1.0, 10, 0)

    assert bench.memory_target([run(1, 100, 110), run(2, 150, 160)]) is None
    passed, text = bench.memory_target([run(1, 100, 110), run(4, 125, 140)])
    assert passed
    assert "1.25x once loaded" in text
    passed, text = bench.memory_target([run(1, 100, 100), run(4, 350, 352)])
    assert not passed
    assert "3.50x once loaded" in text


def run_script(*arguments: str, timeout: float = 600) -> dict[str, Any]:
    command = [sys.executable, str(SCRIPT), *arguments, "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout)


def test_memory_subcommand_on_a_small_model(trained: Paths, tmp_path: Path) -> None:
    """A tiny run of ``memory`` on the sample model (every framework has one; the large
    model it builds by default is sized by tree counts): 1 and 2 workers, 1 s of load."""
    report = run_script(
        "memory",
        *("--workers", "1,2", "--load-seconds", "1", "--clients", "2", "--request-rows", "10"),
        *("--model-dir", str(trained.model), "--load-generator", "python"),
        *("--keep", str(tmp_path)),
    )
    assert report["model"]["dir"] == str(trained.model)
    assert [run["workers"] for run in report["runs"]] == [1, 2]
    for run in report["runs"]:
        assert run["processes"] >= 1
        assert run["pss_loaded_mib"] > 0
        assert run["pss_after_load_test_mib"] > 0
        assert run["pss_peak_mib"] >= run["pss_after_load_test_mib"]
        assert run["requests"] > 0
        assert run["errors"] == 0
    assert report["target"] is None  # 4 workers were not measured
    text = bench.format_memory(report)
    assert "PSS after load" in text
    assert "ratio to 1 worker" in text
    assert "PASS" not in text
    assert "FAIL" not in text


def test_cold_start_subcommand(trained: Paths, tmp_path: Path) -> None:
    report = run_script(
        "cold-start",
        *("--model-dir", str(trained.model), "--runs", "1", "--workers", "1"),
        *("--keep", str(tmp_path)),
    )
    [run] = report["runs"]
    assert run["bare_load"] > 0
    assert 0 < run["port_bound"] <= run["first_ping_200"]
    assert run["first_prediction_latency"] > 0
    assert run["first_prediction_status"] == 200
    summary = report["summary"]
    assert summary["ratio"] > 0
    assert isinstance(summary["passed"], bool)
    text = bench.format_cold_start(report)
    assert "first 200 on /ping" in text
    assert ("PASS" in text) != ("FAIL" in text)
