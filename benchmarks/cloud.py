#!/usr/bin/env python3
"""Figures for the class's life at DigitalOcean, measured in test droplets with the real TLJH behind
the DigitalOcean API stand-in (tests/test_cloud_droplets.py): `up` from nothing, the replacement of
a droplet by one from a newer snapshot (and the class's downtime), a backup of the class's volume and
a restore from it. Needs root, like the droplet tests; takes about 20 minutes. Prints the figures.

    sudo python3 benchmarks/cloud.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cloud_droplets.py"],
        cwd=REPO, capture_output=True, text=True)
    figures = [line for line in result.stdout.splitlines() if line.startswith("figure: ")]
    for line in figures:
        print(line.removeprefix("figure: "))
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-2000:], sep="\n", file=sys.stderr)
        return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
