#!/usr/bin/env python3
"""Figures for bake/boot in the test droplet, one run on one machine: boot-to-ready of a droplet
made from the snapshot against the one-piece first-boot install, and the image's size before and
after the cleanup (the whole root filesystem, and the bake's layer over the base image).
Prints; asserts nothing. Root only.

    python3 benchmarks/snapshot.py [SPEC]     (default: examples/underworld.yaml)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO)]

import testdroplet  # noqa: E402
from firstboot import droplets, render_for  # noqa: E402

from classimage import droplet as layout  # noqa: E402
from classimage import plan  # noqa: E402


def size(path: Path) -> int:
    return int(subprocess.run(["du", "-sx", "--bytes", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def mb(n: int) -> str:
    return f"{n / 1e6:8.1f} MB"


def boot(make, name, source, stage, layers=None) -> tuple[float, dict]:
    droplet = make(name, layers, stand_in=layers is None)
    user_data, _ = render_for(droplet, source, stage)
    droplet.seed(user_data, f"i-{name}")
    started = time.monotonic()
    droplet.boot()
    status = droplet.wait_for_cloud_init(1800)
    elapsed = time.monotonic() - started
    ours = droplet.read_json(layout.STATUS)
    if status["status"] != "done" or ours["state"] != "ready":
        sys.exit(f"{name}: cloud-init {status['status']}, classimage {ours['state']}")
    return elapsed, ours


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("run it as root: it builds and boots containers")
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "examples" / "underworld.yaml"
    image = testdroplet.image()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as folder, droplets(image, Path(folder)) as make:
        one_piece, _ = boot(make, "one-piece", source, plan.FULL)
        print(f"{source.name}, one-piece first boot to ready:      {one_piece:6.1f} s")

        builder = make("build")
        user_data, _ = render_for(builder, source, plan.BAKE)
        builder.seed(user_data, "i-build")
        started = time.monotonic()
        builder.boot()
        builder.wait_for_cloud_init(1800)
        print(f"bake (build droplet) to ready:                   {time.monotonic() - started:6.1f} s")
        before, layer_before = size(builder.root), size(builder.upper)
        started = time.monotonic()
        finished = builder.sh(layout.FINISH_BAKE, timeout=600)
        if finished.returncode != 0:
            sys.exit(finished.stdout + finished.stderr)
        print(f"finish-bake (seal and clean):                     {time.monotonic() - started:6.1f} s")
        after, layer_after = size(builder.root), size(builder.upper)
        layers = builder.snapshot(Path(folder) / "snapshot-layer")

        from_snapshot, status = boot(make, "from-snapshot", source, plan.BOOT, layers)
        print(f"droplet from the snapshot, boot to ready:        {from_snapshot:6.1f} s "
              f"({one_piece / from_snapshot:.0f}x faster)")
        for step in status["steps"]:
            print(f"    {step['name']:<14} {step['seconds']:5.1f} s")
        print(f"image, whole root filesystem: before cleanup {mb(before)}, after {mb(after)}")
        print(f"image, the bake's layer over the base image: before {mb(layer_before)}, after {mb(layer_after)}")


if __name__ == "__main__":
    main()
