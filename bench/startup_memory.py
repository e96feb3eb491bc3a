#!/usr/bin/env python3
"""Cold start on every framework and memory with several workers: issue 14's figures.

``bench/run startup-memory [options]`` runs this (or the Python of your choice). For each
framework of the template's cookiecutter.json it bakes a project (the default server),
installs it into a virtualenv cached under ~/.cache/sm-byoc/bench, trains its sample model
(``make train-local``) and runs the project's ``scripts/benchmark.py cold-start``: the
server's spawn -> first /ping 200 against a bare Python that imports the framework and loads
the same model, alternating, the median of ``--runs``. Then, for scikit-learn, for each
server stack of ``--memory-servers``, ``scripts/benchmark.py memory``: the total PSS of
every process of the server with 1, 2 and 4 workers, once the model is loaded and after
``--load-seconds`` of load, with a large RandomForest (trained once by the first project
with its own entry point, and served by each stack).

It needs no network beyond pip's index (its mirror): PyTorch comes from ``--torch-wheel``
when given, else from PyTorch's CPU index as the generated Makefile installs it. Each
framework may need its own interpreter (``--python tensorflow=/usr/bin/python3.11``); the
project is baked for that interpreter's Python version.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # the cached virtualenvs and helpers of bench/compare.py

TEMPLATE = compare.TEMPLATE
TORCH_INDEX_URL = "https://download.pytorch.org/whl/cpu"


def template_choices() -> dict[str, list[str]]:
    context = json.loads((TEMPLATE / "cookiecutter.json").read_text())
    return {key: context[key] for key in ("framework", "server", "python_version")}


def python_version(python: str) -> str:
    code = "import sys; print('%d.%d' % sys.version_info[:2])"
    return compare.run([python, "-c", code]).strip()


def bake(out: Path, **answers: str) -> Path:
    """The template baked with ``answers`` into a new folder under ``out``."""
    tools = compare.venv("cookiecutter", sys.executable, ["cookiecutter>=2.5"])
    folder = out / "-".join(answers.values())
    folder.mkdir(parents=True)
    extra = [f"{key}={value}" for key, value in answers.items()]
    compare.run(
        [str(tools / "bin/cookiecutter"), str(TEMPLATE), "--no-input", "-o", str(folder), *extra]
    )
    [project] = [p for p in folder.iterdir() if p.is_dir()]
    return project


def project_venv(python: str, project: Path, torch: list[str]) -> Path:
    """The project's dependencies once per pyproject.toml (and torch first, for PyTorch:
    else pip brings the CUDA build); the project itself every run."""
    pyproject = re.sub(r"^name = .*$", "", (project / "pyproject.toml").read_text(), flags=re.M)
    pre = torch if "torch" in pyproject else []
    env = compare.venv("project", python, [], key=pyproject + "\n".join(pre))
    pip = [str(env / "bin/python"), "-m", "pip", "install", "-q"]
    installed = env / ".deps"
    if not installed.exists() and pre:
        compare.run(pip + pre)
    compare.run(pip + (["--no-deps"] if installed.exists() else []) + ["-e", str(project)])
    installed.write_text("ok\n")
    return env


def benchmark(env: Path, project: Path, *arguments: str) -> dict[str, Any]:
    command = [str(env / "bin/python"), str(project / "scripts/benchmark.py"), *arguments]
    return json.loads(compare.run([*command, "--json"], cwd=project))


def cold_start(
    framework: str, python: str, torch: list[str], options: argparse.Namespace, work: Path
) -> dict[str, Any]:
    project = bake(work, framework=framework, python_version=python_version(python))
    env = project_venv(python, project, torch)
    compare.say(f"{framework}: training the sample model (make train-local)")
    compare.run(["make", "-C", str(project), "train-local", f"PYTHON={env / 'bin/python'}"])
    compare.say(f"{framework}: cold start, {options.runs} runs")
    model = project / ".local" / "opt_ml" / "model"
    arguments = ["--model-dir", str(model), "--runs", str(options.runs)]
    arguments += ["--workers", str(options.workers)]
    return benchmark(env, project, "cold-start", *arguments)


def memory(
    server: str, python: str, options: argparse.Namespace, work: Path, model: Path | None
) -> dict[str, Any]:
    project = bake(
        work, framework="scikit-learn", server=server, python_version=python_version(python)
    )
    env = project_venv(python, project, [])
    compare.say(f"memory on {server}: workers {options.memory_workers}")
    arguments = ["--workers", options.memory_workers, "--load-seconds", str(options.load_seconds)]
    arguments += ["--clients", str(options.clients)]
    if model is not None:
        arguments += ["--model-dir", str(model)]
    else:
        arguments += ["--trees", str(options.trees), "--train-rows", str(options.train_rows)]
        arguments += ["--keep", str(work / "large-model")]
    report = benchmark(env, project, "memory", *arguments)
    report["server"] = server
    return report


def cold_start_table(bench: Any, reports: dict[str, dict[str, Any]]) -> str:
    lines = [
        [
            "framework",
            "bare import + load",
            "server first /ping 200",
            "ratio",
            f"<= {bench.COLD_START_TARGET}x",
            "first prediction",
            "port bound",
        ]
    ]
    for framework, report in reports.items():
        summary = report["summary"]
        lines.append(
            [
                framework,
                compare.ms(summary["bare_load"]),
                compare.ms(summary["first_ping_200"]),
                f"{summary['ratio']:.2f}x",
                "PASS" if summary["passed"] else "FAIL",
                compare.ms(summary["first_prediction_latency"]),
                compare.ms(summary["port_bound"]),
            ]
        )
    return bench.table(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    choices = template_choices()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--frameworks",
        default=",".join(choices["framework"]),
        help="frameworks for the cold start (default: all of cookiecutter.json; none: skip)",
    )
    parser.add_argument("--runs", type=int, default=5, help="cold starts of each (5)")
    parser.add_argument("--workers", type=int, default=2, help="workers at cold start (2)")
    parser.add_argument(
        "--memory-servers",
        default="fastapi-uvicorn,flask-gunicorn",
        help="stacks for the memory figures (fastapi-uvicorn,flask-gunicorn; none: skip)",
    )
    parser.add_argument("--memory-workers", default="1,2,4", help="worker counts (1,2,4)")
    parser.add_argument("--load-seconds", type=float, default=60, help="load per run (60)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (4)")
    parser.add_argument("--trees", type=int, default=300, help="trees of the large model")
    parser.add_argument("--train-rows", type=int, default=20_000, help="its synthetic rows")
    parser.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="FRAMEWORK=PYTHON",
        help="the interpreter for one framework (default: this one), e.g. "
        "tensorflow=/usr/bin/python3.11",
    )
    parser.add_argument(
        "--torch-wheel", type=Path, help=f"install torch from this wheel (else {TORCH_INDEX_URL})"
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    options = parser.parse_args(argv)
    options.frameworks = [f for f in options.frameworks.split(",") if f not in ("", "none")]
    options.memory_servers = [
        s for s in options.memory_servers.split(",") if s not in ("", "none")
    ]
    for name, values in (("framework", options.frameworks), ("server", options.memory_servers)):
        unknown = set(values) - set(choices[name])
        if unknown:
            parser.error(f"unknown {name} {', '.join(sorted(unknown))}")
    pythons = {}
    for item in options.python:
        framework, _, python = item.partition("=")
        if framework not in choices["framework"] or not python:
            parser.error(f"--python {item}: FRAMEWORK=PYTHON")
        pythons[framework] = python
    options.pythons = pythons
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    torch = (
        [str(options.torch_wheel)]
        if options.torch_wheel
        else ["--index-url", TORCH_INDEX_URL, "torch>=2.4,<3"]
    )
    work = Path(tempfile.mkdtemp(prefix="sm-byoc-startup-memory-"))
    compare.say(f"work folder {work}")
    cold: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    memories: list[dict[str, Any]] = []
    bench = None
    try:
        for framework in options.frameworks:
            python = options.pythons.get(framework, sys.executable)
            try:
                cold[framework] = cold_start(framework, python, torch, options, work)
            except SystemExit as error:  # compare.run: a command failed; go on with the rest
                failures.append(f"{framework}: {str(error)[-2000:]}")
                options.keep = True
        model = None
        for server in options.memory_servers:
            report = memory(server, sys.executable, options, work, model)
            memories.append(report)
            model = Path(report["model"]["dir"])  # the next stack serves the same model
        scripts = sorted(work.glob("*/*/scripts/benchmark.py"))
        if scripts:
            bench = compare.load_module(scripts[0], "benchmark_script")
    except BaseException:
        compare.say(f"failed: {work} is kept")
        raise
    machine = bench.machine() if bench else {}
    out = [f"machine: {machine.get('cpu')}, {machine.get('cores')} cores"]
    if cold and bench:
        out += [
            "",
            f"== cold start: median of {options.runs}, server with {options.workers} workers ==",
            cold_start_table(bench, cold),
        ]
    for report in memories:
        out += [
            "",
            f"== memory: scikit-learn on {report['server']} ==",
            bench.format_memory(report),
        ]
    out += failures
    print("\n".join(out))
    if options.json:
        figures = {"cold_start": cold, "memory": memories, "failures": failures}
        options.json.write_text(json.dumps(figures, indent=2, default=str))
    if options.keep:
        compare.say(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
