#!/usr/bin/env python3
"""Figures for the class's life at DigitalOcean.

1. API requests per verb (`up` from nothing, `up` with nothing to change, a replacement, a restore),
   and the time the verb's requests take at DigitalOcean as the stand-in's latency model
   (tests/do_standin.py DIGITALOCEAN, each figure with its source) makes them: the verbs run against
   the stand-in with no droplet booting, on virtual time. Seconds.
2. With --droplets, the same verbs with test droplets running the real TLJH behind the stand-in
   (tests/booted/test_cloud_droplets.py, about 30 minutes): `up` from nothing, the one-piece and the snapshot
   replacements with students' downtime and its parts, a backup, a restore. Then the replacement's
   downtime estimated for DigitalOcean, before and after make-before-break: the API's part from the
   latency model, the droplet's own part (the class's data mounted to the hub ready; booting and
   provisioning) as measured here.
3. With --before REV, the snapshot replacement as REV (a commit from before make-before-break, e.g.
   8b6b2b8) did it, measured the same way with its own tests (stop the old droplet, then make the new
   one): the "before" downtime measured here. REV's tree is exported to a temporary folder.

    sudo python3 benchmarks/cloud.py [--droplets] [--before REV]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]
os.environ.setdefault("CLASSIMAGE_VENDOR", str(REPO.parent.parent / "shared" / "vendor"))


def api_figures() -> dict[str, float]:
    import yaml

    import cloudrun
    import course_repo
    import do_standin

    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        os.environ["CLASSIMAGE_SECRETS"] = str(folder / "secrets")
        data = yaml.safe_load((REPO / "examples" / "minimal.yaml").read_text())
        data["droplet"] = {"region": "nyc3", "size": "s-2vcpu-4gb"}
        first, second = folder / "course.yaml", folder / "course-v2.yaml"
        first.write_text(yaml.safe_dump(data))
        data["hub"]["idle_timeout"] = "45m"
        second.write_text(yaml.safe_dump(data))
        ca = course_repo.TestCA(folder / "ca")
        figures = {}
        with do_standin.StandIn(folder / "cloud", do_standin.Paper(), ca, clock=do_standin.Ticks(),
                                latency=do_standin.DIGITALOCEAN) as api:
            api.bundle = do_standin.ca_bundle(ca, folder)

            def run(label: str, *argv: str) -> None:
                start = len(api.requests)
                result = cloudrun.run(api, *argv)
                assert result.returncode == 0, result.stdout + result.stderr
                took = re.search(r"^done in (\d+) s", result.stdout, re.MULTILINE)
                down = re.search(r"students could not reach the hub for (\d+) s", result.stdout)
                changing = sum(1 for m, _, _ in api.requests[start:] if m != "GET")
                print(f"{label}: {len(api.requests) - start} requests to DigitalOcean ({changing} changing "
                      f"something), about {took.group(1) if took else '?'} s waiting for DigitalOcean (the run's own "
                      "clock against the latency model)"
                      + (f", {down.group(1)} s of it without the class" if down else ""))
                figures[label] = len(api.requests) - start
                api.quiesce()

            run("up from nothing", "up", str(first))
            run("up with nothing to change", "up", str(first))
            run("replacement (make before break)", "up", str(second))
            api.clock.advance(600)
            run("backup", "backup", str(second))
            (backup,) = api.volume_snapshots
            run("restore", "restore", str(second), "--backup", backup)
    return figures


def droplet_figures(tree: Path = REPO, *select: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", "tests/booted/test_cloud_droplets.py",
         *select], cwd=tree, capture_output=True, text=True)
    figures = [line.removeprefix("figure: ") for line in result.stdout.splitlines() if line.startswith("figure: ")]
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-2000:], sep="\n", file=sys.stderr)
        raise SystemExit(result.returncode)
    return figures


def estimates(figures: list[str]) -> None:
    """Students' downtime at DigitalOcean, by the latency model for what the API does and the droplet's
    own times measured here (a test droplet boots faster than a virtual machine: the `before` figures
    are lower bounds)."""
    import do_standin

    model = do_standin.DIGITALOCEAN
    for line in figures:
        found = re.search(r"^(.*?) ?replacement( onto a newer snapshot)?.*ready but for its data after (\d+) s.*for (\d+) s, of which the "
                          r"droplet's own part \(data mounted to hub ready\) (\d+) s", line)
        if not found:
            continue
        kind, prepared, down, inside = found.group(1) or "snapshot", *map(int, found.groups()[2:])
        after = model.shutdown + model.detach + model.attach + model.assign + inside
        # break before make: the old one stops and lets go of the volume, then the new one is made with it,
        # boots and provisions (what make before break does while the class still runs), then the address moves
        before = model.shutdown + model.detach + model.create + prepared + inside + model.assign
        print(f"{kind} replacement at DigitalOcean (estimate): students lose the class for about {after:.0f} s "
              f"with make before break (shutdown {model.shutdown:.0f} + detach {model.detach:.0f} + attach "
              f"{model.attach:.0f} + assign {model.assign:.0f} by the latency model, + {inside} s on the droplet as "
              f"measured here), against at least {before:.0f} s before it (+ create {model.create:.0f} + "
              f"{prepared} s of boot and provisioning as measured here); measured here: {down} s")


def before(revision: str) -> None:
    """The snapshot replacement as `revision` made it, by its own droplet tests in its own tree."""
    with tempfile.TemporaryDirectory() as name:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", revision], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", name], input=archive.stdout, check=True)
        for line in droplet_figures(Path(name), "-k", "replaces_the_droplet"):
            print(f"before make-before-break ({revision}): {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--droplets", action="store_true", help="also run the verbs with real test droplets (~30 min)")
    parser.add_argument("--before", metavar="REV", help="also measure the replacement as commit REV did it")
    args = parser.parse_args()
    api_figures()
    if args.before:
        before(args.before)
    if args.droplets:
        figures = droplet_figures()
        for line in figures:
            print(line)
        estimates(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
