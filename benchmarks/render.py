#!/usr/bin/env python3
"""Figures for the foundation: how long `validate` and `render` take as whole commands in a cold
process, and how big the user data is. Prints a table; asserts nothing.

    python3 benchmarks/render.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def timed(args: list[str], runs: int) -> tuple[float, float, bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "classimage", *args], capture_output=True, env=env)
        seconds.append(time.perf_counter() - started)
        if result.returncode != 0:
            sys.exit(f"{' '.join(args)} failed:\n{result.stderr.decode()}")
    return statistics.median(seconds), min(seconds), result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    print(f"python {sys.version.split()[0]}, {runs} runs each, cold process per run (median / min)")
    print(f"{'example':<12} {'validate':>16} {'render --stdout':>18} {'user data':>22}")
    for example in EXAMPLES:
        v_median, v_min, _ = timed(["validate", str(example)], runs)
        r_median, r_min, data = timed(["render", str(example), "--stdout"], runs)
        size = f"{len(data):,} B ({len(data) / 1024:.1f} KiB)"
        print(f"{example.stem:<12} {v_median * 1000:>7.0f} / {v_min * 1000:>4.0f} ms"
              f" {r_median * 1000:>9.0f} / {r_min * 1000:>4.0f} ms {size:>22}")
    print("limit for user data: 65,536 B (64 KiB)")


if __name__ == "__main__":
    main()
