#!/usr/bin/env python3
"""Our generated server against the two servers users pick instead, on the same model files.

``bench/run`` installs what this needs from Debian (wrk, a Java runtime, make) and runs it.
It bakes the template's default project into a temporary folder, trains the project's own
default model on the sample data (``make train-local package``, then the archive extracted
as SageMaker does) and a LogisticRegression on the same data, and for each model starts,
loads and stops in turn, with 2 workers each:

- ours: the project's ``scripts/benchmark.py --model-dir`` (which starts the server);
- MLflow's scoring server: ``mlflow models serve --env-manager local -w 2``, the same model
  object saved with ``mlflow.sklearn.save_model(..., serialization_format="pickle")``;
- AWS's sagemaker-inference-toolkit on Multi Model Server: a ``model_fn``/``input_fn``/
  ``predict_fn``/``output_fn`` module loading the same ``model.joblib`` with joblib, and
  the toolkit's ``model_server.start_model_server`` as the entry point.

The load is the same for all three, from the same functions (the generated
``scripts/benchmark.py``): wrk over loopback, GET /ping and POST /invocations with 1, 100 and
10,000 CSV rows from data/iris.csv. MLflow reads CSV with pandas and takes its first line as
the header, so its bodies carry one header line more (each server gets the format it
documents). Prints one table per model, cold start and RSS, and the targets of issue 5 as
PASS/FAIL lines. The virtualenvs are cached under ~/.cache/sm-byoc/bench.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

TEMPLATE = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("SM_BYOC_CACHE", Path.home() / ".cache" / "sm-byoc")) / "bench"
SERVERS = {"ours": "ours", "mlflow": "MLflow", "toolkit": "toolkit"}
PEERS = ("mlflow", "toolkit")
MODELS = {
    "default": "the project's default model (RandomForest, 100 trees)",
    "logreg": "LogisticRegression",
}
MMS_NAMESPACE = "com.amazonaws.ml.mms.ModelServer"

TRAIN_LOGREG = """
import csv, json, shutil, sys
from pathlib import Path
import joblib, numpy as np
from sklearn.linear_model import LogisticRegression
data, default, out = map(Path, sys.argv[1:4])
rows = [row for row in csv.reader(data.read_text().splitlines()) if row]
labels = np.asarray([row[0] for row in rows])
features = np.asarray([[float(v) for v in row[1:]] for row in rows])
out.mkdir(parents=True, exist_ok=True)
model = LogisticRegression(max_iter=1000).fit(features, labels)
joblib.dump(model, out / "model.joblib")
shutil.copy(default / "metadata.json", out / "metadata.json")
print(json.dumps({"accuracy": float(np.mean(model.predict(features) == labels))}))
"""

SAVE_MLFLOW = """
import sys, joblib, mlflow.sklearn
model = joblib.load(sys.argv[1])
mlflow.sklearn.save_model(model, sys.argv[2], serialization_format="pickle")
"""

TOOLKIT_INFERENCE = '''"""The toolkit's user module: what its default handler looks for."""
import os

import joblib
import numpy as np
from sagemaker_inference import decoder, encoder


def model_fn(model_dir, context=None):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def input_fn(input_data, content_type, context=None):
    # The toolkit's own decoder; one CSV row decodes to a 1-D array.
    return np.atleast_2d(decoder.decode(input_data, content_type))


def predict_fn(data, model, context=None):
    return model.predict(data)


def output_fn(prediction, accept, context=None):
    return encoder.encode(prediction, accept)
'''

TOOLKIT_HANDLER = '''"""The handler service Multi Model Server loads: the toolkit's default one."""
from sagemaker_inference.default_handler_service import DefaultHandlerService


class HandlerService(DefaultHandlerService):
    pass
'''

TOOLKIT_ENTRYPOINT = """from sagemaker_inference import model_server

model_server.start_model_server(handler_service="bench_handler_service")
"""


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def run(command: Sequence[str], **kwargs: Any) -> str:
    done = subprocess.run(
        list(command), capture_output=True, text=True, check=False, timeout=3600, **kwargs
    )
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-6000:]
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{tail}")
    return done.stdout


def venv(name: str, python: str, requirements: Sequence[str], key: str = "") -> Path:
    """A cached virtualenv with ``requirements``, made once per interpreter and key."""
    digest = hashlib.sha256(f"{python}\n{key}\n{sorted(requirements)}".encode()).hexdigest()
    path = CACHE / f"{name}-{digest[:12]}"
    path.parent.mkdir(parents=True, exist_ok=True)
    with (CACHE / f"{path.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / ".ready").exists():
            say(f"creating {path} ({' '.join(requirements)})")
            shutil.rmtree(path, ignore_errors=True)
            run([python, "-m", "venv", str(path)])
            run([str(path / "bin/python"), "-m", "pip", "install", "-q", "--upgrade", "pip"])
            if requirements:
                run([str(path / "bin/python"), "-m", "pip", "install", "-q", *requirements])
            (path / ".ready").write_text("ok\n")
    return path


def load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# Preparing the project, the models and the peers ------------------------------------------


def bake(python: str, out: Path) -> Path:
    tools = venv("cookiecutter", python, ["cookiecutter>=2.5"])
    run([str(tools / "bin/cookiecutter"), str(TEMPLATE), "--no-input", "-o", str(out)])
    [project] = [p for p in out.iterdir() if p.is_dir()]
    return project


def project_venv(python: str, project: Path) -> Path:
    """The project's dependencies once per pyproject.toml; the project itself every run."""
    pyproject = re.sub(r"^name = .*$", "", (project / "pyproject.toml").read_text(), flags=re.M)
    env = venv("project", python, [], key=pyproject)
    installed = env / ".deps"
    run(
        [str(env / "bin/python"), "-m", "pip", "install", "-q"]
        + (["--no-deps"] if installed.exists() else [])
        + ["-e", str(project)]
    )
    installed.write_text("ok\n")
    return env


def pinned(python: Path) -> list[str]:
    """The project's numeric stack, so that every server unpickles the very same model."""
    code = "import importlib.metadata as m, json; print(json.dumps({n: m.version(n) for n in "
    code += "('scikit-learn', 'numpy', 'scipy', 'joblib')}))"
    versions = json.loads(run([str(python), "-c", code]))
    return [f"{name}=={version}" for name, version in versions.items()]


def train(project: Path, env: Path, package: str, models: Path) -> dict[str, Path]:
    python = str(env / "bin/python")
    say("training the default model: make train-local package")
    run(["make", "-C", str(project), "train-local", "package", f"PYTHON={python}"])
    default = models / "default"
    run(
        [
            python,
            "-m",
            f"{package}.packaging",
            "extract",
            str(project / "model.tar.gz"),
            str(default),
        ]
    )
    say("training a LogisticRegression on the same data")
    logreg = models / "logreg"
    fitted = run(
        [python, "-c", TRAIN_LOGREG, str(project / "data/iris.csv"), str(default), str(logreg)]
    )
    say(f"LogisticRegression training accuracy {json.loads(fitted)['accuracy']:.3f}")
    return {"default": default, "logreg": logreg}


def prepare_mlflow(python: str, pins: list[str], models: dict[str, Path], work: Path) -> Path:
    env = venv("mlflow", python, ["mlflow", *pins])
    for name, model_dir in models.items():
        target = work / "mlflow" / name
        run(
            [
                str(env / "bin/python"),
                "-c",
                SAVE_MLFLOW,
                str(model_dir / "model.joblib"),
                str(target),
            ]
        )
    return env


def prepare_toolkit(python: str, pins: list[str], models: dict[str, Path], work: Path) -> Path:
    # pkg_resources (setuptools < 81): the toolkit imports it; Python 3.12's venv has none.
    requirements = ["multi-model-server", "sagemaker-inference", "setuptools<81", *pins]
    env = venv("toolkit", python, requirements)
    for name, model_dir in models.items():
        code = work / "toolkit" / name / "model" / "code"
        code.mkdir(parents=True)
        (code.parent / "model.joblib").symlink_to(model_dir / "model.joblib")
        (code / "inference.py").write_text(TOOLKIT_INFERENCE)
        (code / "bench_handler_service.py").write_text(TOOLKIT_HANDLER)
        (work / "toolkit" / name / "run").mkdir()
    (work / "toolkit" / "serve.py").write_text(TOOLKIT_ENTRYPOINT)
    return env


# Running the load -------------------------------------------------------------------------


class Settings(argparse.Namespace):
    duration: float
    warmup: float
    connections: int
    threads: int
    workers: int
    cases: str


def run_ours(
    env: Path, project: Path, model_dir: Path, options: Settings, logs: Path
) -> dict[str, Any]:
    command = [str(env / "bin/python"), str(project / "scripts/benchmark.py")]
    command += ["--model-dir", str(model_dir), "--workers", str(options.workers), "--json"]
    command += ["--duration", str(options.duration), "--warmup", str(options.warmup)]
    command += ["--connections", str(options.connections), "--threads", str(options.threads)]
    command += ["--cases", options.cases, "--log", str(logs / "ours.log")]
    return json.loads(run(command, cwd=project))


def low_free_port(start: int = 20000, stop: int = 32000) -> int:
    """A free port below 32767: Multi Model Server refuses higher ones (most ephemeral ones)."""
    for port in range(start + os.getpid() % 1000, stop):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}-{stop}")


def mms_processes(bench: ModuleType, env: Path) -> list[int]:
    """Multi Model Server's front end, which the toolkit's entry point starts detached."""
    return [
        p.pid
        for p in bench.read_processes().values()
        if MMS_NAMESPACE in p.cmdline and str(env) in p.cmdline
    ]


def toolkit_leftovers() -> set[Path]:
    """What the toolkit leaves on the machine: the MMS config it writes to /etc, and the
    Unix sockets of MMS's workers in /tmp."""
    return {
        path
        for path in (Path("/etc/sagemaker-mms.properties"), *Path("/tmp").glob(".mms.sock.*"))
        if path.exists()
    }


def run_peer(
    bench: ModuleType,
    server: str,
    env: Path,
    model: str,
    work: Path,
    options: Settings,
    rows: list[str],
) -> dict[str, Any]:
    port = bench.free_port() if server == "mlflow" else low_free_port()
    header = None
    environment = {**os.environ, "PATH": f"{env / 'bin'}:{os.environ.get('PATH', '')}"}
    if server == "mlflow":
        # pandas.read_csv: the first line is the header.
        header = ",".join(f"f{i}" for i in range(len(rows[0].split(","))))
        command = [str(env / "bin/mlflow"), "models", "serve", "-m", str(work / "mlflow" / model)]
        command += ["--env-manager", "local", "-w", str(options.workers)]
        command += ["-h", "127.0.0.1", "-p", str(port)]
        cwd = work
    else:
        command = [str(env / "bin/python"), str(work / "toolkit" / "serve.py")]
        environment["SAGEMAKER_BASE_DIR"] = str(work / "toolkit" / model)
        environment["SAGEMAKER_BIND_TO_PORT"] = str(port)
        environment["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(options.workers)
        cwd = work / "toolkit" / model / "run"
    cases = bench.build_cases(options.cases.split(","), rows, header)
    probe = bench.build_cases(["1"], rows, header)[0]
    log = work / "logs" / f"{server}-{model}.log"
    found_before = toolkit_leftovers()
    process, cold = bench.measure_cold_start(command, environment, port, probe, cwd=cwd, log=log)
    url = f"http://127.0.0.1:{port}"
    try:
        bench.wait_until_warm(url, probe)
        results = bench.run_cases(
            url, cases, options.duration, options.connections, options.threads, options.warmup
        )
        roots = [process.pid] + (mms_processes(bench, env) if server == "toolkit" else [])
        memory = bench.memory(roots).as_dict()
    finally:
        bench.stop(process)
        if server == "toolkit":
            for path in toolkit_leftovers() - found_before:
                path.unlink(missing_ok=True)
    return {
        "url": url,
        "cold_start": vars(cold),
        "results": [r.as_dict() for r in results],
        "memory": memory,
    }


# Report -----------------------------------------------------------------------------------


def by_case(report: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {r["case"]: r for r in report["results"]} if report else {}


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def fmt(value: float | None, pattern: str = "{:,.0f}") -> str:
    return "-" if value is None else pattern.format(value)


def ms(seconds: float | None) -> str:
    return fmt(None if seconds is None else seconds * 1000, "{:,.0f} ms")


def model_table(bench: ModuleType, figures: dict[str, dict[str, Any] | None]) -> str:
    servers = [s for s in SERVERS if figures.get(s)]
    header = ["case"]
    for server in servers:
        header += [f"{SERVERS[server]} req/s", "p50 ms", "p99 ms"]
    header += [f"ours/{SERVERS[p]}" for p in PEERS if p in servers]
    lines = [header]
    cases = by_case(figures["ours"])
    for case, ours in cases.items():
        line = [ours["label"]]
        for server in servers:
            r = by_case(figures[server]).get(case)
            line += [
                fmt(r and r["requests_per_second"]),
                fmt(r and r["p50_ms"], "{:.2f}"),
                fmt(r and r["p99_ms"], "{:.2f}"),
            ]
        for peer in PEERS:
            if peer in servers:
                theirs = by_case(figures[peer]).get(case)
                value = ratio(
                    ours["requests_per_second"], theirs and theirs["requests_per_second"]
                )
                line.append(fmt(value, "{:.2f}x"))
        lines.append(line)
    return bench.table(lines)


def start_table(bench: ModuleType, figures: dict[str, dict[str, Any] | None]) -> str:
    lines = [
        ["server", "port bound", "first /ping 200", "first prediction", "RSS/worker", "RSS all"]
    ]
    for server, report in figures.items():
        if not report:
            continue
        cold, memory = report.get("cold_start", {}), report.get("memory", {})
        per_worker = memory.get("rss_per_worker_mib")
        lines.append(
            [
                SERVERS[server],
                ms(cold.get("port_bound")),
                ms(cold.get("first_ping_200")),
                ms(cold.get("first_prediction")),
                fmt(per_worker, "{:,.0f} MiB") + f" x{memory.get('workers', 0)}",
                fmt(memory.get("rss_total_mib"), "{:,.0f} MiB"),
            ]
        )
    return bench.table(lines)


def targets(
    all_figures: dict[str, dict[str, dict[str, Any] | None]], peers: Sequence[str] = PEERS
) -> list[tuple[bool, str]]:
    """Issue 5's targets: (passed, what was checked and the figures), for the peers run.

    A peer that was run but gave no figures (it failed to start) fails its targets.
    """
    checks: list[tuple[bool, str]] = []

    def rps(model: str, server: str, case: str) -> float | None:
        r = by_case(all_figures[model].get(server)).get(case)
        return r["requests_per_second"] if r else None

    def p99(model: str, server: str, case: str) -> float | None:
        r = by_case(all_figures[model].get(server)).get(case)
        return r["p99_ms"] if r else None

    for peer, factor in (("mlflow", 5), ("toolkit", 2)):
        if peer not in peers:
            continue
        ours, theirs = rps("logreg", "ours", "1"), rps("logreg", peer, "1")
        value = ratio(ours, theirs)
        checks.append(
            (
                value is not None and value >= factor,
                f"LogReg 1-row: req/s >= {factor}x {SERVERS[peer]}'s: "
                f"{fmt(ours)} vs {fmt(theirs)} = {fmt(value, '{:.2f}x')}",
            )
        )
    for peer in peers:
        ours, theirs = p99("logreg", "ours", "1"), p99("logreg", peer, "1")
        checks.append(
            (
                ours is not None and theirs is not None and ours < theirs,
                f"LogReg 1-row: p99 lower than {SERVERS[peer]}'s: "
                f"{fmt(ours, '{:.2f}')} ms vs {fmt(theirs, '{:.2f}')} ms",
            )
        )
    for case in ("1", "100", "10000"):
        ours = rps("default", "ours", case)
        if ours is None:
            continue
        parts, passed = [], True
        for peer in peers:
            theirs = rps("default", peer, case)
            passed = passed and theirs is not None and ours >= theirs
            parts.append(f"{SERVERS[peer]} {fmt(theirs)} ({fmt(ratio(ours, theirs), '{:.2f}x')})")
        checks.append(
            (
                passed,
                f"default model {case}-row: no peer faster: ours {fmt(ours)} req/s, "
                + ", ".join(parts),
            )
        )
    # For the LogReg, whose predict is nearly free, this weighs the parse and encode alone.
    for model in MODELS:
        ours = all_figures[model].get("ours") or {}
        inprocess = ours.get("inprocess")
        if inprocess:
            share = inprocess["server_over_inprocess"]
            checks.append(
                (
                    share is not None and share >= 0.5,
                    f"{model} {inprocess['rows']:,}-row: server rows/s within 2x of in-process "
                    f"predict: {fmt(inprocess['server_rows_per_second'])} vs "
                    f"{fmt(inprocess['rows_per_second'])} rows/s = {fmt(share, '{:.2f}x')}",
                )
            )
        cold = ours.get("cold_start") or {}
        first, bound = cold.get("first_ping_200"), cold.get("port_bound")
        checks.append(
            (
                first is not None and first < 1,
                f"{model}: cold start to first 200 on /ping < 1 s: {fmt(first, '{:.3f}')} s",
            )
        )
        checks.append(
            (
                bound is not None and bound < 0.25,
                f"{model}: port bound < 250 ms: {fmt(bound and bound * 1000, '{:.0f}')} ms",
            )
        )
    return checks


def error_lines(all_figures: dict[str, dict[str, dict[str, Any] | None]]) -> list[str]:
    lines = []
    for model, figures in all_figures.items():
        for server, report in figures.items():
            for r in (report or {}).get("results", []):
                if r["errors"] or r["status_errors"]:
                    lines.append(
                        f"WARNING {model} {SERVERS[server]} {r['label']}: {r['errors']} socket "
                        f"errors, {r['status_errors']} non-2xx answers"
                    )
    return lines


# Command line -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s per case, 1 s warm-up")
    parser.add_argument("--duration", type=float, help="seconds per case (10; --quick: 2)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per case (2; --quick: 1)")
    parser.add_argument("--connections", type=int, default=16, help="open connections (16)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument("--workers", type=int, default=2, help="workers per server (2)")
    parser.add_argument("--cases", default="ping,1,100,10000", help="ping and row counts")
    parser.add_argument("--models", default="default,logreg", help="default,logreg")
    parser.add_argument("--servers", default="ours,mlflow,toolkit", help="ours,mlflow,toolkit")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    options = parser.parse_args(argv, namespace=Settings())
    if options.duration is None:
        options.duration = 2.0 if options.quick else 10.0
    if options.warmup is None:
        options.warmup = 1.0 if options.quick else 2.0
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    python = sys.executable
    models_wanted = [m for m in options.models.split(",") if m]
    servers_wanted = [s for s in options.servers.split(",") if s]
    if "ours" not in servers_wanted:
        raise SystemExit("--servers must include ours: the others are compared with it")
    work = Path(tempfile.mkdtemp(prefix="sm-byoc-bench-"))
    (work / "logs").mkdir()
    say(f"work folder {work}")
    try:
        project = bake(python, work / "bake")
        package = next(p.name for p in (project / "src").iterdir() if p.is_dir())
        env = project_venv(python, project)
        bench = load_module(project / "scripts" / "benchmark.py", "benchmark_script")
        models = train(project, env, package, work / "models")
        pins = pinned(env / "bin/python")
        peers: dict[str, Path] = {}
        if "mlflow" in servers_wanted:
            peers["mlflow"] = prepare_mlflow(python, pins, models, work)
        if "toolkit" in servers_wanted:
            peers["toolkit"] = prepare_toolkit(python, pins, models, work)
        rows = bench.feature_rows(project / "data" / "iris.csv")
        before = bench.machine()
        say(f"machine: {before['cpu']}, {before['cores']} cores, load {before['loadavg']}")
        all_figures: dict[str, dict[str, dict[str, Any] | None]] = {}
        failures: list[str] = []
        for model in models_wanted:
            figures: dict[str, dict[str, Any] | None] = {}
            all_figures[model] = figures
            say(f"{model}: ours")
            figures["ours"] = run_ours(env, project, models[model], options, work / "logs")
            for peer, peer_env in peers.items():
                say(f"{model}: {SERVERS[peer]}")
                try:
                    figures[peer] = run_peer(bench, peer, peer_env, model, work, options, rows)
                except (RuntimeError, TimeoutError, OSError) as error:
                    figures[peer] = None
                    failures.append(f"{model} {SERVERS[peer]}: {error} (logs: {work / 'logs'})")
                    options.keep = True
        after = bench.machine()
        complete = set(models_wanted) == set(MODELS)
        checks = targets(all_figures, list(peers)) if complete else []
    except BaseException:
        say(f"failed: {work} is kept for its logs")
        raise
    print(render(bench, options, before, after, models, all_figures, checks, failures))
    if options.json:
        options.json.write_text(
            json.dumps(
                {
                    "machine_before": before,
                    "machine_after": after,
                    "options": {k: v for k, v in vars(options).items() if k != "json"},
                    "figures": all_figures,
                    "targets": [{"passed": p, "check": c} for p, c in checks],
                    "failures": failures,
                },
                indent=2,
                default=str,
            )
        )
    if options.keep:
        say(f"logs and models kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def render(
    bench: ModuleType,
    options: Settings,
    before: dict[str, Any],
    after: dict[str, Any],
    models: dict[str, Path],
    all_figures: dict[str, dict[str, dict[str, Any] | None]],
    checks: list[tuple[bool, str]],
    failures: list[str],
) -> str:
    out = [
        f"machine: {before['cpu']}, {before['cores']} cores; load average before "
        f"{before['loadavg'][0]:.2f}, after {after['loadavg'][0]:.2f}",
        f"load: wrk, {options.duration:g} s per case after {options.warmup:g} s warm-up, "
        f"{options.connections} connections, {options.threads} thread(s); "
        f"{options.workers} workers per server",
    ]
    for model, figures in all_figures.items():
        out += ["", f"== {MODELS[model]} ==", model_table(bench, figures), ""]
        out.append(start_table(bench, figures))
        inprocess = (figures.get("ours") or {}).get("inprocess")
        if inprocess:
            out.append(
                f"in-process predict on {inprocess['rows']:,} parsed rows: "
                f"{inprocess['rows_per_second']:,.0f} rows/s; our server: "
                f"{inprocess['server_rows_per_second']:,.0f} rows/s"
            )
    out += ["", *failures, *error_lines(all_figures)]
    if checks:
        out += ["", "targets (issue 5):"]
        out += [("PASS  " if passed else "FAIL  ") + text for passed, text in checks]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
