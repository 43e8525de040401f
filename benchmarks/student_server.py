#!/usr/bin/env python3
"""What one student's server costs the droplet, measured with the real TLJH 2.0.0 in a test droplet
(its JupyterHub, SystemdSpawner and JupyterLab; the user environment is the stand-in's virtualenv
from PyPI, tests/tljh_downloads.py): memory and CPU of the hub with no student, then of each of
STUDENTS students' servers

  idle     signed in, server started, JupyterLab loaded, no notebook open;
  kernel   a notebook open (a python3 kernel that has run nothing);
  working  that kernel after a data-analysis lesson's cells (numpy, pandas and matplotlib imported,
           a million-row table made, grouped and plotted), each cell timed and its CPU counted.

Memory per process from /proc/PID/smaps_rollup: RSS (all it maps), PSS (shared pages split among
their users) and USS (its private pages: what one more student adds). CPU from /proc/PID/stat. The
droplet's memory limits are not enforced on this host (cgroup v1; see IN-THE-TEST-DROPLET.md),
which changes nothing here: every figure is far under the default 1G limit. Prints; asserts nothing.
Root only. classimage/pipeline/sizing.py takes its figures from a run of this script.

    python3 benchmarks/student_server.py [--students N] [--idle-seconds S] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO)]

import testdroplet  # noqa: E402
from firstboot import ADMIN_PASSWORD, boot, browser, droplets, explain  # noqa: E402

from classimage.droplet import provision# noqa: E402

SPEC = {
    "course": {"name": "Sizing", "slug": "sizing"},
    "hub": {"admins": ["instructor"]},
    "environment": {"pip": ["numpy", "pandas", "matplotlib"]},
}
# A lesson's cells, run one after the other in one kernel, as a student works through a notebook.
LESSON = (
    ("import", "import numpy as np, pandas as pd, matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt"),
    ("table", "rng = np.random.default_rng(1)\nframe = pd.DataFrame({'station': rng.integers(0, 50, 1_000_000), "
              "'depth': rng.normal(10, 3, 1_000_000), 'magnitude': rng.gamma(2, 1, 1_000_000)})"),
    ("group", "summary = frame.groupby('station').agg(['mean', 'std', 'max'])\nprint(len(summary))"),
    ("plot", "figure, axes = plt.subplots(1, 2, figsize=(10, 4))\nframe.sample(20_000, random_state=1).plot.scatter("
             "x='depth', y='magnitude', ax=axes[0], s=1)\nsummary['magnitude']['mean'].plot(ax=axes[1])\n"
             "figure.savefig('lesson.png', dpi=100)\nprint('saved')"),
)

# Run inside the droplet (its Python, standard library only): every process's memory and CPU time.
PROBE = r"""
import json, os
ticks = os.sysconf('SC_CLK_TCK')
found = []
for entry in os.listdir('/proc'):
    if not entry.isdigit() or int(entry) == os.getpid():
        continue
    try:
        with open(f'/proc/{entry}/status') as f:
            status = dict(line.split(':', 1) for line in f if ':' in line)
        rollup = {}
        with open(f'/proc/{entry}/smaps_rollup') as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[-1] == 'kB':
                    rollup[parts[0].rstrip(':')] = int(parts[1]) * 1024
        with open(f'/proc/{entry}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
        with open(f'/proc/{entry}/comm') as f:
            name = f.read().strip()
    except (OSError, ValueError):
        continue
    if not rollup:
        continue  # a kernel thread
    found.append({'pid': int(entry), 'uid': int(status['Uid'].split()[0]), 'name': name,
                  'rss': rollup.get('Rss', 0), 'pss': rollup.get('Pss', 0),
                  'uss': rollup.get('Private_Clean', 0) + rollup.get('Private_Dirty', 0),
                  'cpu': (int(fields[11]) + int(fields[12])) / ticks})
print(json.dumps(found))
"""


def processes(droplet) -> list[dict]:
    droplet.path("/var/tmp/probe.py").write_text(PROBE)
    result = droplet.sh("python3 /var/tmp/probe.py", check=True)
    return json.loads(result.stdout)


def uid_of(droplet, student: str) -> int:
    return int(droplet.sh(f"id -u jupyter-{student}", check=True).stdout)


def totals(found: list[dict], uids: set[int] | None = None, *, others: bool = False) -> dict:
    chosen = [p for p in found if (p["uid"] not in uids if others else p["uid"] in uids)] if uids is not None else found
    return {key: sum(p[key] for p in chosen) for key in ("rss", "pss", "uss", "cpu")} | {"processes": len(chosen)}


def biggest(found: list[dict], uids: set[int], count: int = 6) -> str:
    """The processes outside `uids` that hold the most memory (PSS), by name."""
    others = sorted((p for p in found if p["uid"] not in uids), key=lambda p: p["pss"], reverse=True)[:count]
    return ", ".join(f"{p['name']} {p['pss'] / 2**20:.0f}" for p in others)


def mib(n: float) -> str:
    return f"{n / 2**20:6.1f} MiB"


def show(label: str, figures: dict) -> None:
    print(f"  {label:<34} RSS {mib(figures['rss'])}  PSS {mib(figures['pss'])}  USS {mib(figures['uss'])}"
          f"  ({figures['processes']} processes)")


def cpu_share(droplet, uids: set[int], seconds: float) -> float:
    """The share of one core the processes of `uids` used over `seconds` of doing nothing."""
    before = totals(processes(droplet), uids)["cpu"]
    time.sleep(seconds)
    return (totals(processes(droplet), uids)["cpu"] - before) / seconds


def measure(droplet, figures: dict, uids: dict[str, int], state: str, label: str) -> list[dict]:
    """Each student's servers' memory now, kept in `figures` under `state` and shown; every process."""
    found = processes(droplet)
    for student, uid in uids.items():
        figures["students"][student][state] = totals(found, {uid})
        show(f"{student}: {label}", figures["students"][student][state])
    return found


def run_cell(client, student: str, kernel: str, code: str) -> str:
    return asyncio.run(client._execute(student, kernel, code, timeout=300))  # the kernel stays for the next cell


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=2)
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    image = testdroplet.image(log=lambda message: None)
    figures: dict = {"students": {}}
    with tempfile.TemporaryDirectory(dir="/var/tmp") as folder, droplets(image, Path(folder)) as make:
        droplet = make()
        started = time.monotonic()
        cloud_init, _ = boot(droplet, SPEC)
        status = droplet.read_json(provision.STATUS)
        if cloud_init["status"] != "done" or (status or {}).get("state") != "ready":
            sys.exit(f"the droplet did not become ready:{explain(droplet)}")
        print(f"droplet ready in {time.monotonic() - started:.0f} s (TLJH 2.0.0, JupyterLab, numpy, pandas, "
              f"matplotlib); {args.students} student(s)\n")
        time.sleep(10)  # the hub's own start settles
        base = totals(processes(droplet))
        figures["system"] = base
        print("memory, by state (RSS: all a process maps; PSS: shared pages split; USS: its own)")
        show("hub, proxy and system, no student", base)
        print(f"    (MiB PSS: {biggest(processes(droplet), set())})")
        admin = browser(droplet)
        admin.sign_in("instructor", ADMIN_PASSWORD)
        clients, uids = {}, {}
        for number in range(1, args.students + 1):
            student = f"student{number}"
            client = browser(droplet)
            client.sign_up(student, "student-password-1")
            assert admin.set_approval(student).code == 200  # the "Authorize" button: a GET approves nothing here
            client.sign_in(student, "student-password-1")
            begun = time.monotonic()
            client.start_server(student)
            clients[student], uids[student] = client, uid_of(droplet, student)
            figures["students"][student] = {"start_seconds": time.monotonic() - begun}
        time.sleep(5)
        every = set(uids.values())
        measure(droplet, figures, uids, "idle", "idle server")
        idle_cpu = cpu_share(droplet, every, args.idle_seconds) / len(every)
        figures["idle_cpu_share"] = idle_cpu
        kernels = {}
        for student, client in clients.items():
            code, kernel = client.api("POST", f"/user/{student}/api/kernels", {"name": "python3"})
            assert code == 201, (code, kernel)
            kernels[student] = kernel["id"]
            run_cell(client, student, kernel["id"], "1 + 1")
        measure(droplet, figures, uids, "kernel", "a notebook open")
        kernel_cpu = cpu_share(droplet, every, args.idle_seconds) / len(every)
        figures["kernel_cpu_share"] = kernel_cpu
        for student, client in clients.items():
            cells = []
            for name, code in LESSON:
                before = totals(processes(droplet), {uids[student]})["cpu"]
                begun = time.monotonic()
                printed = run_cell(client, student, kernels[student], code)
                wall = time.monotonic() - begun
                used = totals(processes(droplet), {uids[student]})["cpu"] - before
                if "Error" in printed:
                    sys.exit(f"{student}'s cell {name} failed: {printed}")
                cells.append({"cell": name, "seconds": wall, "cpu_seconds": used})
            figures["students"][student]["cells"] = cells
        found = measure(droplet, figures, uids, "working", "after the lesson")
        figures["system_after"] = totals(found, every, others=True)
        show("hub, proxy and system, now", figures["system_after"])
        print(f"    (MiB PSS: {biggest(found, every)})")
        print(f"\nCPU, each student's server, share of one core over {args.idle_seconds:.0f} s of nothing: "
              f"idle {idle_cpu:.2%}, a notebook open {kernel_cpu:.2%}")
        print("the lesson's cells (wall seconds / CPU seconds), each student:")
        for student, data in figures["students"].items():
            cells = ", ".join(f"{c['cell']} {c['seconds']:.1f}/{c['cpu_seconds']:.1f}" for c in data["cells"])
            print(f"  {student}: server started in {data['start_seconds']:.1f} s; {cells}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
