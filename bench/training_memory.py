#!/usr/bin/env python3
"""Peak memory of reading a large CSV channel, against the size of the arrays it yields.

Run it with the Python of a generated project's virtualenv (its package installed):

    .venv/bin/python bench/training_memory.py --package iris_classifier --rows 8000000

It writes a synthetic CSV (a label and 4 features per row, about 28 bytes a row) under a
temporary /opt/ml layout, then, each in a fresh process: reads the training channel as the
runner does, and reads it then splits off the validation rows (``validation_fraction``
0.2). It prints how far RSS peaked above the process's RSS once its imports are done,
and that peak as a multiple of the arrays' size.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

MEASURE = """
import sys, time
from pathlib import Path
from {package}.channels import channels, stratified_split
from {package}.environment import Paths

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

paths = Paths(Path(sys.argv[1]))
base = status("VmRSS")
started = time.perf_counter()
data = channels(paths)["training"].read()
if sys.argv[2] == "split":
    data, validation = stratified_split(data, 0.2, 0, in_place=True)
    arrays = data.features.nbytes + data.labels.nbytes
    arrays += validation.features.nbytes + validation.labels.nbytes
else:
    arrays = data.features.nbytes + data.labels.nbytes
peak = status("VmHWM")  # the high-water mark of RSS
print(f"{{time.perf_counter() - started:.1f}} {{arrays}} {{peak - base}}")
"""


def write_csv(path: Path, rows: int) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    with path.open("w") as out:
        for start in range(0, rows, 500_000):
            count = min(500_000, rows - start)
            block = np.column_stack([rng.integers(0, 3, count), rng.normal(size=(count, 4))])
            np.savetxt(out, block, fmt=["%d"] + ["%.3f"] * 4, delimiter=",")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", required=True, help="the generated project's package")
    parser.add_argument("--rows", type=int, default=8_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "opt_ml"
        data = base / "input" / "data" / "training"
        data.mkdir(parents=True)
        write_csv(data / "big.csv", args.rows)
        size = (data / "big.csv").stat().st_size
        print(f"{args.rows:,} rows, {size / 2**20:,.0f} MiB of CSV")
        print(f"{'case':<14}{'seconds':>9}{'arrays MiB':>12}{'peak MiB':>10}{'peak/arrays':>13}")
        for case in ("read", "read + split"):
            script = MEASURE.format(package=args.package)
            mode = "split" if "split" in case else "read"
            done = subprocess.run(
                [sys.executable, "-c", script, str(base), mode],
                capture_output=True,
                text=True,
                check=True,
            )
            seconds, arrays, peak = (float(x) for x in done.stdout.split())
            print(
                f"{case:<14}{seconds:>9.1f}{arrays / 2**20:>12,.0f}{peak / 2**20:>10,.0f}"
                f"{peak / arrays:>13.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
