#!/usr/bin/env python3
"""Figures for first boot in the test droplet: how long the image takes to build (cold, into an
empty cache, and warm, from the cache), how long each example takes from boot to ready and where
that time goes, and the status file of a successful run. Prints; asserts nothing. Root only.

    python3 benchmarks/firstboot.py [--skip-cold]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO)]

import testdroplet  # noqa: E402
from firstboot import render_for  # noqa: E402
from standin import serve  # noqa: E402

from classimage import droplet as layout  # noqa: E402


def image_build_times(skip_cold: bool) -> None:
    if not skip_cold:
        with tempfile.TemporaryDirectory(dir="/var/tmp") as empty:
            testdroplet.CACHE = Path(empty)
            started = time.monotonic()
            testdroplet.image(log=lambda message: None)
            print(f"image, cold (empty cache: debootstrap + cloud-init): {time.monotonic() - started:6.1f} s")
        testdroplet.CACHE = Path(os.environ.get("CLASSIMAGE_TEST_CACHE", "/var/cache/classimage-test-droplet"))
    testdroplet.image(log=lambda message: None)  # make sure it is cached
    started = time.monotonic()
    rootfs = testdroplet.image()
    print(f"image, warm (from the cache):                        {time.monotonic() - started:6.3f} s")
    with tempfile.TemporaryDirectory(dir="/var/tmp") as folder:
        started = time.monotonic()
        droplet = testdroplet.TestDroplet(Path(folder) / "copy", rootfs)
        print(f"one droplet's copy of the image:                     {time.monotonic() - started:6.1f} s")
        droplet.destroy()


def boot_to_ready(example: Path) -> dict:
    with tempfile.TemporaryDirectory(dir="/var/tmp") as folder:
        droplet = testdroplet.TestDroplet(Path(folder) / "droplet", testdroplet.image())
        try:
            serve.install(droplet.root)
            user_data, _ = render_for(droplet, example)
            droplet.seed(user_data, f"i-bench-{example.stem}")
            started = time.monotonic()
            droplet.boot()
            cloud_init = droplet.wait_for_cloud_init(1800)
            elapsed = time.monotonic() - started
            status = droplet.read_json(layout.STATUS)
        finally:
            droplet.destroy()
    print(f"\n{example.name}: cloud-init {cloud_init['status']}, boot to ready {elapsed:.1f} s "
          f"(user data {len(user_data.encode()):,} B)")
    for step in status["steps"]:
        print(f"  {step['name']:<16} {step['seconds']:>6.1f} s  {step['state']}")
    accounted = sum(step["seconds"] for step in status["steps"])
    print(f"  {'(boot, cloud-init)':<16} {elapsed - accounted:>6.1f} s")
    return status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-cold", action="store_true", help="do not time a build into an empty cache")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run it as root: it builds and boots containers")
    image_build_times(args.skip_cold)
    statuses = [boot_to_ready(example) for example in sorted((REPO / "examples").glob("*.yaml"))]
    print("\nstatus file of the minimal example's run:")
    print(json.dumps(statuses[0], indent=2))


if __name__ == "__main__":
    main()
