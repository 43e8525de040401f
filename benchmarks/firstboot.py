#!/usr/bin/env python3
"""Figures for first boot with the real TLJH 2.0.0 in the test droplet, one run on one machine: for
each example, the one-piece first boot and a droplet made from the snapshot, from boot to ready and
step by step, the bake and its finishing, and the image's size before and after the cleanup. Also
how long the droplet image and the layer of stand-ins for TLJH's downloads take to build.
Prints; asserts nothing. Root only.

    python3 benchmarks/firstboot.py [--cold] [SPEC ...]     (default: both examples)

--cold builds the image and the stand-ins' layer into an empty cache first (about 2 minutes more).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO)]

import testdroplet  # noqa: E402
import tljh_downloads  # noqa: E402
from firstboot import droplets, render_for  # noqa: E402

from classimage.pipeline import plan  # noqa: E402
from classimage.droplet import provision# noqa: E402


def size(path: Path) -> int:
    return int(subprocess.run(["du", "-sx", "--bytes", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def images(cold: bool) -> Path:
    if cold:
        testdroplet.CACHE = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="classimage-cold-cache-"))
    started = time.monotonic()
    image = testdroplet.image(log=lambda message: None)
    print(f"droplet image (debootstrap + cloud-init){' , cold' if cold else ', from the cache'}: "
          f"{time.monotonic() - started:.1f} s")
    if not tljh_downloads.REAL:
        started = time.monotonic()
        tljh_downloads.layer(image, log=lambda message: None)
        print(f"stand-ins for TLJH's downloads{', cold' if cold else ', from the cache'}: "
              f"{time.monotonic() - started:.1f} s")
    return image


def boot(make, name: str, source: Path, stage: str, stack=None) -> tuple[float, dict, int]:
    droplet = make(name, stack)
    user_data, _ = render_for(droplet, source, stage)
    droplet.seed(user_data, f"i-{name}")
    started = time.monotonic()
    droplet.boot()
    cloud_init = droplet.wait_for_cloud_init(1800)
    elapsed = time.monotonic() - started
    status = droplet.read_json(provision.STATUS)
    if cloud_init["status"] != "done" or status["state"] != "ready":
        sys.exit(f"{name}: cloud-init {cloud_init['status']}, classimage {status and status['state']}")
    return elapsed, status, len(user_data.encode())


def steps(status: dict, elapsed: float) -> None:
    for step in status["steps"]:
        print(f"    {step['name']:<16} {step['seconds']:6.1f} s")
    print(f"    {'(boot, cloud-init)':<16} {elapsed - sum(s['seconds'] for s in status['steps']):6.1f} s")


def example(image: Path, source: Path) -> None:
    with tempfile.TemporaryDirectory(dir="/var/tmp") as folder, droplets(image, Path(folder)) as make:
        one_piece, status, bytes_ = boot(make, "one-piece", source, plan.FULL)
        print(f"\n{source.name}: one-piece first boot to ready {one_piece:.1f} s (user data {bytes_:,} B)")
        steps(status, one_piece)

        builder = make("build")
        user_data, _ = render_for(builder, source, plan.BAKE)
        builder.seed(user_data, "i-build")
        started = time.monotonic()
        builder.boot()
        builder.wait_for_cloud_init(1800)
        print(f"{source.name}: bake (build droplet) to ready {time.monotonic() - started:.1f} s")
        before, layer_before = size(builder.root), size(builder.upper)
        started = time.monotonic()
        finished = builder.sh(f"{provision.RUNNER} finish-bake", timeout=600)
        if finished.returncode != 0:
            sys.exit(finished.stdout + finished.stderr)
        print(f"{source.name}: finish-bake (seal and clean) {time.monotonic() - started:.1f} s")
        after, layer_after = size(builder.root), size(builder.upper)
        stack = builder.snapshot(Path(folder) / "snapshot-layer")

        from_snapshot, status, bytes_ = boot(make, "from-snapshot", source, plan.BOOT, stack)
        print(f"{source.name}: droplet from the snapshot, boot to ready {from_snapshot:.1f} s "
              f"({one_piece / from_snapshot:.0f}x faster; user data {bytes_:,} B)")
        steps(status, from_snapshot)
        print(f"{source.name}: image, whole root filesystem before cleanup {mb(before)}, after {mb(after)}; "
              f"the bake's own layer before {mb(layer_before)}, after {mb(layer_after)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", action="store_true", help="build the image and layer into an empty cache first")
    parser.add_argument("specs", nargs="*", type=Path, help="course specs (default: the examples)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run it as root: it builds and boots containers")
    image = images(args.cold)
    for source in args.specs or sorted((REPO / "examples").glob("*.yaml")):
        example(image, source)


if __name__ == "__main__":
    main()
