#!/usr/bin/env python3
"""The first minute of a lecture, measured (issue 20): on one test droplet running the real TLJH
2.0.0, for each class size, that many students sign up, the instructor approves them, and all of
them open the course's launch link within WINDOW seconds, each an asyncio browser of its own
(tests/classstart.py: login form, spawn progress, nbgitpuller's stream, the notebook's kernel
running a cell that imports numpy, pandas and matplotlib). Prints, per class size: the time from
the click to the first and the last student's result, p50 and p95, failures, where the time went,
the hub's and the droplet's CPU and memory during the rush, and an idle and a working student's
server's memory. Between sizes the instructor stops every server. Asserts nothing. Root only.

    python3 benchmarks/storm.py [--students 30 60] [--window 10] [--tljh-defaults] [--json FILE]

--tljh-defaults puts back TLJH's own values of what classimage's hub config changes for the rush
(see templates/jupyterhub_config.py.j2), to see what they move.

This machine is not a droplet: two cores shared with other work and with the students' clients
themselves (the figures say how busy it was), and cgroup limits that are not enforced here (every
server may use all the memory and both cores; on a droplet each is held to hub.memory_limit and
hub.cpu_limit). See docs/design.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO)]

import classstart  # noqa: E402
import course_repo  # noqa: E402
import hubclient  # noqa: E402
import testdroplet  # noqa: E402
from conftest import cli  # noqa: E402
from firstboot import ADMIN_PASSWORD, boot, droplets, explain  # noqa: E402

from classimage.droplet import provision# noqa: E402

PASSWORD = "student-password-1"
SPEC = {
    "course": {"name": "Storm", "slug": "storm"},
    "hub": {"admins": ["instructor"], "memory_limit": "1G", "cpu_limit": 1},
    "environment": {"pip": ["numpy", "pandas", "matplotlib"]},
    "content": [{"url": course_repo.URL, "open": course_repo.NOTEBOOK}],
}
# The lecture's first cell: the course's packages imported, a little work, a printed result.
CELL = ("import os, numpy as np, pandas as pd, matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "print(os.environ['JUPYTERHUB_USER'], int(pd.DataFrame({'x': np.arange(10)}).x.sum()))")
STEPS = ("signed in", "server ready", "pulled", "notebook", "kernel", "result")
# TLJH's own values of what classimage's hub config sets for a class's first minute: traefik's API
# password hashed with bcrypt's default cost (12), as jupyterhub-traefik-proxy hashes it, and
# JupyterHub's 30 s for a started server to answer.
DEFAULTS = """c.Spawner.http_timeout = 30
import bcrypt
from tljh.configurer import load_config
API = load_config()["traefik_api"]
API_USER = API["username"] + ":" + bcrypt.hashpw(API["password"].encode(), bcrypt.gensalt(12)).decode()
c.TraefikProxy.extra_dynamic_config = {"http": {"middlewares": {"auth_api": {"basicAuth": {"users": [API_USER]}}}}}
"""


def mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def load() -> str:
    return "/".join(f"{value:.2f}" for value in os.getloadavg())


async def prepare(base: str, names: list[str]) -> tuple[float, float]:
    started = time.monotonic()
    await classstart.sign_up_all(base, names, PASSWORD)
    signed_up = time.monotonic() - started
    instructor = classstart.Instructor(base, "instructor", ADMIN_PASSWORD)
    try:
        started = time.monotonic()
        await instructor.sign_in()
        await instructor.approve(names)
        return signed_up, time.monotonic() - started
    finally:
        await instructor.close()


def servers(droplet, names: list[str]) -> dict:
    """Each student's server (its processes but the kernel) and kernel, PSS and USS, now."""
    passwd = {}
    for line in droplet.path("/etc/passwd").read_text().splitlines():
        fields = line.split(":")
        passwd[int(fields[2])] = fields[0]
    wanted = {f"jupyter-{name}" for name in names}
    found = {"server": {}, "working": {}}
    for process in classstart.processes(droplet.leader):
        user = passwd.get(process.uid)
        if user not in wanted:
            continue
        for kind in ("working",) + (() if "ipykernel" in process.argv else ("server",)):
            pss, uss = found[kind].get(user, (0, 0))
            found[kind][user] = (pss + process.pss, uss + process.uss)
    return {kind: {"pss": statistics.median(v[0] for v in by_user.values()),
                   "uss": statistics.median(v[1] for v in by_user.values())}
            for kind, by_user in found.items() if by_user}


def stop_all(droplet, names: list[str]) -> None:
    admin = hubclient.signed_in(f"http://{droplet.ip}", "instructor", ADMIN_PASSWORD)
    admin.get("/hub/home")
    for name in names:
        admin.api("DELETE", f"/hub/api/users/{name}/server")

    def stopped() -> bool:
        units = droplet.sh("systemctl list-units --plain --no-legend 'jupyter-*' --state=active").stdout
        return not any(f"jupyter-{name}.service" in units for name in names)

    hubclient.wait_for(stopped, 300, "every server stopped")


def rush(droplet, spec_path: Path, size: int, window: float) -> dict:
    base = f"http://{droplet.ip}"
    names = [f"c{size}s{number:02d}" for number in range(1, size + 1)]
    signed_up, approved = asyncio.run(prepare(base, names))
    link = json.loads(cli("links", str(spec_path), "--hub", base, "--json").stdout)["content"][0]["link"]
    time.sleep(5)  # the signups' work done
    before = load()
    usage = classstart.Usage(droplet.leader)
    client = resource.getrusage(resource.RUSAGE_SELF)
    usage.start()
    outcomes = asyncio.run(classstart.class_start(base, link, names, PASSWORD, CELL, window, 600))
    usage.stop()
    client_after = resource.getrusage(resource.RUSAGE_SELF)
    memory = servers(droplet, names)
    results = [o.seconds for o in outcomes if o.error is None and o.seconds is not None]
    figures = {
        "students": size, "window": window, "signups_seconds": signed_up, "approvals_seconds": approved,
        "results": sorted(results), "failures": {o.name: o.error for o in outcomes if o.error},
        "error_pages": {o.name: [f"{p.status} {p.url}" for p in o.error_pages] for o in outcomes if o.error_pages},
        "clicks": max(o.clicks for o in outcomes),
        "steps": {step: statistics.median(o.steps[step] for o in outcomes if step in o.steps)
                  for step in STEPS if any(step in o.steps for o in outcomes)},
        "usage": usage.summary(), "servers": memory, "load_before": before, "load_after": load(),
        "client_cpu_seconds": (client_after.ru_utime + client_after.ru_stime) - (client.ru_utime + client.ru_stime),
    }
    report(figures)
    stop_all(droplet, names)
    return figures


def report(f: dict) -> None:
    results, used = f["results"], f["usage"]
    print(f"\n{f['students']} students, clicks spread over {f['window']:.0f} s "
          f"(load average before {f['load_before']}, after {f['load_after']})")
    print(f"  before the class: {f['students']} signups {f['signups_seconds']:.1f} s, approvals "
          f"{f['approvals_seconds']:.1f} s")
    if results:
        print(f"  result, seconds after the click: first {results[0]:.1f}, p50 "
              f"{classstart.percentile(results, 0.5):.1f}, p95 {classstart.percentile(results, 0.95):.1f}, "
              f"last {results[-1]:.1f}")
    print(f"  failures: {len(f['failures'])}" + "".join(f"\n    {n}: {e}" for n, e in f["failures"].items()))
    pages = sum(len(p) for p in f["error_pages"].values())
    print(f"  error pages seen: {pages}; buttons a student had to press: {f['clicks'] - 1}")
    print("  median step, seconds after the click: "
          + ", ".join(f"{step} {seconds:.1f}" for step, seconds in f["steps"].items()))
    print(f"  during the rush ({used['seconds']:.0f} s): droplet {used['droplet_cores'][0]:.2f} cores average, "
          f"{used['droplet_cores'][1]:.2f} peak, memory (PSS) peak {mib(used['droplet_pss_peak'])}; hub "
          f"{used['hub_cores'][0]:.2f} cores average, {used['hub_cores'][1]:.2f} peak, memory peak "
          f"{mib(used['hub_pss_peak'])}; traefik {used['proxy_cores'][0]:.2f} cores average, "
          f"{used['proxy_cores'][1]:.2f} peak; the whole machine {used['host_cores'][0]:.2f} of 2 cores "
          f"(the students' clients {f['client_cpu_seconds'] / used['seconds']:.2f})")
    for kind, label in (("server", "idle server (no kernel)"), ("working", "working server (kernel, cell run)")):
        if kind in f["servers"]:
            print(f"  {label}, median: PSS {mib(f['servers'][kind]['pss'])}, USS {mib(f['servers'][kind]['uss'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, nargs="+", default=[30, 60])
    parser.add_argument("--window", type=float, default=10)
    parser.add_argument("--tljh-defaults", action="store_true")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    image = testdroplet.image(log=lambda message: None)
    figures = []
    with tempfile.TemporaryDirectory(dir="/var/tmp") as folder, droplets(image, Path(folder)) as make:
        ca = course_repo.TestCA(Path(folder) / "ca")
        droplet = make(ca=ca)
        started = time.monotonic()
        cloud_init, spec_path = boot(droplet, SPEC, ca=ca)
        if cloud_init["status"] != "done" or (droplet.read_json(provision.STATUS) or {}).get("state") != "ready":
            sys.exit(f"the droplet did not become ready:{explain(droplet)}")
        print(f"droplet ready in {time.monotonic() - started:.0f} s (TLJH 2.0.0; numpy, pandas, matplotlib)")
        if args.tljh_defaults:
            droplet.path("/opt/tljh/config/jupyterhub_config.d/zz-tljh-defaults.py").write_text(DEFAULTS)
            droplet.sh("systemctl restart jupyterhub", check=True)
            hub = hubclient.Browser(f"http://{droplet.ip}")
            hubclient.wait_for(lambda: hub.get("/hub/api").code == 200, 120, "the hub back")
            print("with TLJH's defaults: traefik's API password hashed at bcrypt's cost 12, 30 s for a server to answer")
        time.sleep(10)  # the hub's own start settles
        for size in args.students:
            figures.append(rush(droplet, spec_path, size, args.window))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
