#!/usr/bin/env python3
"""Soak the model server: full load for minutes on end, and the RSS of every worker over time.

Run from the project root, in the project's virtualenv, after ``make train-local``::

    scripts/soak.py --model-dir .local/opt_ml/model             # starts the server itself
    scripts/soak.py --url http://127.0.0.1:8080 --pid PID       # a server already running

The load is ``scripts/benchmark.py``'s: ``wrk`` on one of its cases (``POST /invocations``
with a 100-row CSV by default), run in back-to-back slices of ``--interval`` seconds for
``--minutes`` (10). After each slice, the RSS of every worker (the processes benchmark.py
counts as workers, read from ``/proc``) makes one row of the table.

The verdict compares each worker's RSS at the end of the warm-up (``--warmup`` seconds of
the same load: allocator pools, caches and lazily imported code settle in there) with its RSS
at the end. It fails (exit 1) when a worker grew by more than ``--max-growth-mib`` (20) MiB
*and* by more than ``--max-growth-percent`` (10) %: either limit alone would flag the normal
ups and downs of the allocator, of a few MiB in a small worker and of tens of MiB in a
worker that holds a large model, while a leak under full load grows without end and passes
both within minutes. It also fails when a worker disappeared, or when any request failed or
was answered with a non-2xx status.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, this file's folder is on sys.path: benchmark.py's functions import as is.
import benchmark as bench

KIB_PER_MIB = 1024


@dataclass
class Sample:
    """One slice of the load, and the RSS of each worker right after it."""

    seconds: float  # since the load started, at the end of the slice
    warmup: bool  # the slice began within the warm-up
    result: bench.Result
    rss_kib: dict[int, int] = field(default_factory=dict)  # worker PID -> RSS


@dataclass
class Growth:
    """A worker's RSS at the end of the warm-up and at the end (None: the worker is gone)."""

    pid: int
    start_mib: float
    end_mib: float | None

    @property
    def mib(self) -> float | None:
        return None if self.end_mib is None else self.end_mib - self.start_mib

    @property
    def percent(self) -> float | None:
        mib = self.mib
        return None if mib is None else 100 * mib / self.start_mib


@dataclass(frozen=True)
class Limits:
    max_growth_mib: float = 20.0
    max_growth_percent: float = 10.0


def worker_rss(pid: int) -> dict[int, int]:
    """RSS (KiB) of each worker of the server whose main process is ``pid``."""
    return {worker.pid: worker.rss_kib for worker in bench.memory([pid]).workers}


def soak(
    url: str,
    pid: int,
    case: bench.Case,
    args: argparse.Namespace,
    progress: Callable[[Sample], None] = lambda sample: None,
) -> list[Sample]:
    """``args.minutes`` of load in slices of ``args.interval`` seconds, each followed by an
    RSS sample."""
    samples: list[Sample] = []
    slices = max(1, round(args.minutes * 60 / args.interval))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        for _ in range(slices):
            begun = time.monotonic() - started
            result = bench.run_load(
                url,
                case,
                args.interval,
                args.connections,
                args.threads,
                args.load_generator,
                Path(tmp),
            )
            ended = time.monotonic() - started
            sample = Sample(ended, begun < args.warmup, result, worker_rss(pid))
            samples.append(sample)
            progress(sample)
    return samples


def growths(samples: Sequence[Sample]) -> list[Growth]:
    """Each worker's RSS from the last warm-up sample (or the first) to the last sample."""
    if not samples:
        return []
    warm = [s for s in samples if s.warmup]
    start = warm[-1] if warm and len(warm) < len(samples) else samples[0]
    end = samples[-1]
    return [
        Growth(
            pid,
            kib / KIB_PER_MIB,
            end.rss_kib[pid] / KIB_PER_MIB if pid in end.rss_kib else None,
        )
        for pid, kib in sorted(start.rss_kib.items())
    ]


def problems(samples: Sequence[Sample], limits: Limits) -> list[str]:
    """What makes the soak fail; none when memory stayed flat and every request got a 2xx."""
    found = []
    for growth in growths(samples):
        if growth.mib is None:
            found.append(f"worker {growth.pid} exited during the soak")
        elif growth.mib > limits.max_growth_mib and growth.percent > limits.max_growth_percent:
            found.append(
                f"worker {growth.pid} grew by {growth.mib:.1f} MiB ({growth.percent:.1f} %): "
                f"over both {limits.max_growth_mib:g} MiB and {limits.max_growth_percent:g} %"
            )
    errors = sum(s.result.errors for s in samples)
    status_errors = sum(s.result.status_errors for s in samples)
    if errors:
        found.append(f"{errors} requests failed (connection errors or timeouts)")
    if status_errors:
        found.append(f"{status_errors} answers were not 2xx")
    if not samples:
        found.append("no load was run")
    return found


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / KIB_PER_MIB:,.1f}"


def progress_line(sample: Sample) -> str:
    rss = ", ".join(f"{pid}: {_mib(kib)}" for pid, kib in sorted(sample.rss_kib.items()))
    rate = sample.result.requests_per_second
    return f"{sample.seconds:,.0f} s: {rate:,.0f} req/s; RSS MiB of each worker: {rss}"


def format_samples(samples: Sequence[Sample]) -> str:
    """A row per slice: time, load figures, then the RSS (MiB) of each worker."""
    pids = sorted({pid for sample in samples for pid in sample.rss_kib})
    header = ["time s", "req/s", "p99 ms", "errors", *(f"RSS MiB {pid}" for pid in pids)]
    lines = [header]
    for sample in samples:
        result = sample.result
        lines.append(
            [
                f"{sample.seconds:,.0f}" + (" (warm-up)" if sample.warmup else ""),
                f"{result.requests_per_second:,.0f}",
                f"{result.p99_ms:.2f}",
                str(result.errors + result.status_errors),
                *(_mib(sample.rss_kib.get(pid)) for pid in pids),
            ]
        )
    return bench.table(lines)


def format_verdict(samples: Sequence[Sample], limits: Limits) -> str:
    lines = []
    for growth in growths(samples):
        if growth.end_mib is None:
            lines.append(f"worker {growth.pid}: {growth.start_mib:,.1f} MiB, then gone")
        else:
            lines.append(
                f"worker {growth.pid}: {growth.start_mib:,.1f} -> {growth.end_mib:,.1f} MiB "
                f"({growth.mib:+.1f} MiB, {growth.percent:+.1f} %) after the warm-up"
            )
    measured = [s.result for s in samples if not s.warmup] or [s.result for s in samples]
    requests = sum(r.requests for r in measured)
    seconds = sum(r.seconds for r in measured)
    rate = requests / seconds if seconds else 0.0
    lines.append(f"load after the warm-up: {requests:,} requests, {rate:,.0f} req/s")
    found = problems(samples, limits)
    lines.append("verdict: " + ("FAIL: " + "; ".join(found) if found else "PASS, RSS flat"))
    return "\n".join(lines)


def report(samples: Sequence[Sample], limits: Limits) -> dict[str, Any]:
    return {
        "samples": [
            {
                "seconds": round(s.seconds, 1),
                "warmup": s.warmup,
                "result": s.result.as_dict(),
                "rss_kib": {str(pid): kib for pid, kib in s.rss_kib.items()},
            }
            for s in samples
        ],
        "growth": [{**asdict(g), "mib": g.mib, "percent": g.percent} for g in growths(samples)],
        "limits": asdict(limits),
        "problems": problems(samples, limits),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bench.add_server_arguments(parser)
    parser.add_argument("--minutes", type=float, default=10, help="how long to soak (10)")
    parser.add_argument("--interval", type=float, default=30, help="seconds per sample (30)")
    parser.add_argument("--warmup", type=float, default=60, help="warm-up seconds (60)")
    parser.add_argument("--case", default="100", help="a benchmark.py case: ping, 1, 100...")
    parser.add_argument("--max-growth-mib", type=float, default=Limits.max_growth_mib)
    parser.add_argument("--max-growth-percent", type=float, default=Limits.max_growth_percent)
    args = parser.parse_args(argv)
    if args.url and not args.pid:
        parser.error("--url needs --pid: the RSS is read from the server's processes")
    if min(args.minutes, args.interval, args.workers, args.connections, args.threads) <= 0:
        parser.error("--minutes, --interval, --workers, --connections and --threads: positive")
    bench.check_model_dir(parser, args.model_dir)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    limits = Limits(args.max_growth_mib, args.max_growth_percent)
    rows = bench.feature_rows()
    [case] = bench.build_cases([args.case], rows)
    probe = bench.build_cases(["1"], rows)[0]
    say = (lambda text: None) if args.json else (lambda text: print(text, file=sys.stderr))
    process = None
    with tempfile.TemporaryDirectory(prefix="soak-serve-") as tmp:
        try:
            if args.model_dir is not None:
                say(f"starting python -m {bench.PACKAGE} serve")
                process, _, url = bench.start_server(
                    args.model_dir, Path(tmp) / "opt_ml", args.workers, probe, args.log
                )
                pid = process.pid
            else:
                url, pid = args.url.rstrip("/"), args.pid
            bench.wait_until_warm(url, probe)
            say(f"{case.label} for {args.minutes:g} min, an RSS sample every {args.interval:g} s")
            samples = soak(url, pid, case, args, lambda sample: say(progress_line(sample)))
        finally:
            if process is not None:
                bench.stop(process)
    if args.json:
        print(json.dumps(report(samples, limits), indent=2))
    else:
        print(format_samples(samples))
        print(format_verdict(samples, limits))
    return 1 if problems(samples, limits) else 0


if __name__ == "__main__":
    sys.exit(main())
