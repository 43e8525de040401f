#!/usr/bin/env python3
"""How long the README's first command takes on a fresh Debian 12 machine (the test droplet's image,
nothing cached: apt and pip download everything through the droplet's proxy), part by part, and
from the virtual environment to the first render. Prints; asserts nothing. Root only.

    python3 benchmarks/readme_fresh.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO)]

import testdroplet  # noqa: E402
from freshmachine import machine, readme_commands, run_timed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    runs = parser.parse_args().runs
    command = readme_commands()[0]
    image = testdroplet.image(log=lambda message: None)
    print(f"README's first command, on a fresh Debian 12 (test droplet, no package cache):\n  {command}\n")
    totals, from_venv = [], []
    for run in range(runs):
        with tempfile.TemporaryDirectory(dir="/var/tmp") as folder, machine(Path(folder), image,
                                                                           cached_packages=False) as droplet:
            result, times = run_timed(droplet, command)
        if result.returncode != 0:
            sys.exit(f"run {run + 1} failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
        for part, seconds in times:
            print(f"  {seconds:6.1f} s  {part}")
        total = sum(seconds for _, seconds in times)
        venv = sum(seconds for part, seconds in times if not part.startswith("apt-get"))
        print(f"  {total:6.1f} s  in all; {venv:.1f} s from the virtual environment to the first render\n")
        totals.append(total)
        from_venv.append(venv)
    if runs > 1:
        print(f"median of {runs}: {statistics.median(totals):.1f} s in all, "
              f"{statistics.median(from_venv):.1f} s from the virtual environment to the first render")


if __name__ == "__main__":
    main()
