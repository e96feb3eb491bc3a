"""scripts/soak.py: its verdict on made-up samples, and one short real soak of the project's
server with benchmark.py's built-in client (wrk may be absent)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from {{ cookiecutter.package_name }}.environment import Paths

from .support import PROJECT

SCRIPT = PROJECT / "scripts" / "soak.py"
MIB = 1024  # KiB


@pytest.fixture(scope="module")
def soak() -> Iterator[ModuleType]:
    """The script as a module; it imports benchmark.py from its own folder, as when run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(SCRIPT.parent))
        spec = importlib.util.spec_from_file_location("soak_script", SCRIPT)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        patch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
        spec.loader.exec_module(module)
        yield module


def samples(
    soak: ModuleType, *rss_mib: dict[int, float], warmup: int = 1, status_errors: int = 0
) -> list[Any]:
    """One sample per ``{pid: MiB}``, 30 s apart, the first ``warmup`` of them warm-up."""
    made = []
    for number, rss in enumerate(rss_mib):
        result = soak.bench.Result("100", "POST 100-row CSV", 3000, 30.0, 5.0, 9.0)
        result.status_errors = status_errors if number == len(rss_mib) - 1 else 0
        kib = {pid: int(mib * MIB) for pid, mib in rss.items()}
        made.append(soak.Sample(30.0 * (number + 1), number < warmup, result, kib))
    return made


def test_flat_memory_passes(soak: ModuleType) -> None:
    flat = samples(soak, {11: 100, 12: 110}, {11: 101, 12: 110}, {11: 100.5, 12: 111})
    assert soak.problems(flat, soak.Limits()) == []
    [first, second] = soak.growths(flat)
    assert (first.pid, first.start_mib, first.end_mib) == (11, 100, 100.5)
    assert second.mib == pytest.approx(1)
    assert second.percent == pytest.approx(100 / 110)


def test_growth_during_the_warm_up_does_not_count(soak: ModuleType) -> None:
    warming = samples(soak, {11: 50}, {11: 100}, {11: 101}, warmup=2)
    assert soak.problems(warming, soak.Limits()) == []


def test_only_growth_over_both_limits_fails(soak: ModuleType) -> None:
    limits = soak.Limits(max_growth_mib=20, max_growth_percent=10)
    small = samples(soak, {11: 50}, {11: 50}, {11: 65})  # +15 MiB, +30 %
    large = samples(soak, {11: 1000}, {11: 1000}, {11: 1050})  # +50 MiB, +5 %
    leak = samples(soak, {11: 100}, {11: 100}, {11: 130})  # +30 MiB, +30 %
    assert soak.problems(small, limits) == []
    assert soak.problems(large, limits) == []
    [problem] = soak.problems(leak, limits)
    assert "worker 11 grew by 30.0 MiB (30.0 %)" in problem


def test_a_lost_worker_and_non_2xx_answers_fail(soak: ModuleType) -> None:
    lost = samples(soak, {11: 100, 12: 100}, {11: 100, 12: 100}, {11: 100, 13: 90})
    assert soak.problems(lost, soak.Limits()) == ["worker 12 exited during the soak"]
    refused = samples(soak, {11: 100}, {11: 100}, status_errors=3)
    assert soak.problems(refused, soak.Limits()) == ["3 answers were not 2xx"]
    assert soak.problems([], soak.Limits()) == ["no load was run"]


def test_table_and_verdict(soak: ModuleType) -> None:
    made = samples(soak, {11: 100, 12: 110}, {11: 101, 12: 112})
    lines = soak.format_samples(made).splitlines()
    assert lines[0].split() == [
        "time", "s", "req/s", "p99", "ms", "errors", "RSS", "MiB", "11", "RSS", "MiB", "12"
    ]  # fmt: skip
    assert lines[1].split() == ["30", "(warm-up)", "100", "9.00", "0", "100.0", "110.0"]
    assert len({len(line) for line in lines}) == 1  # aligned columns
    verdict = soak.format_verdict(made, soak.Limits())
    assert "worker 12: 110.0 -> 112.0 MiB (+2.0 MiB, +1.8 %) after the warm-up" in verdict
    assert "load after the warm-up: 3,000 requests, 100 req/s" in verdict
    assert verdict.endswith("verdict: PASS, RSS flat")


def test_arguments(soak: ModuleType, tmp_path: Path) -> None:
    args = soak.parse_args(["--model-dir", str(tmp_path)])
    assert (args.minutes, args.interval, args.warmup, args.case) == (10, 30, 60, "100")
    for wrong in (["--url", "http://x"], [], ["--model-dir", str(tmp_path), "--minutes", "0"]):
        with pytest.raises(SystemExit):
            soak.parse_args(wrong)


def test_a_short_soak_of_the_real_server(trained: Paths, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    command = [sys.executable, str(SCRIPT), "--model-dir", str(trained.model), "--json"]
    command += ["--minutes", "0.1", "--interval", "1.5", "--warmup", "3", "--workers", "2"]
    command += ["--load-generator", "python", "--connections", "2", "--log", str(log)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr + log.read_text()
    report = json.loads(done.stdout)
    assert report["problems"] == []
    assert len(report["samples"]) >= 3
    assert report["samples"][0]["warmup"]
    assert not report["samples"][-1]["warmup"]
    for sample in report["samples"]:
        assert sample["result"]["requests"] > 0
        assert len(sample["rss_kib"]) == 2  # both workers, every time
    assert [growth["end_mib"] > 0 for growth in report["growth"]] == [True, True]
