#!/usr/bin/env python3
"""Figures for the foundation: how long `validate` and `render` take as whole commands in a cold
process, and how big the user data is, also with the class's data on a volume (as `classimage up`
renders it). Prints tables; asserts nothing.

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
    sys.path.insert(0, str(REPO))
    from classimage.pipeline import artifacts, plan, spec

    print("user data with the class's data on a volume (what `classimage up` renders), one-piece / boot:")
    for example in EXAMPLES:
        loaded = spec.load_file(example)
        sizes = []
        for volume in (None, plan.volume_name(loaded.spec.course.slug)):
            files = artifacts.render(loaded, volume=volume)
            sizes.append([len(files[artifacts.USER_DATA[stage]].encode()) for stage in (plan.FULL, plan.BOOT)])
        (full, boot), (full_on, boot_on) = sizes
        print(f"{example.stem:<12} {full:>7,} -> {full_on:>7,} B / {boot:>7,} -> {boot_on:>7,} B")
    print("limit for user data: 65,536 B (64 KiB)")


if __name__ == "__main__":
    main()
