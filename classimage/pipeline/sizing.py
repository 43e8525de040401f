"""How many students a droplet holds: what one student's server was measured to use, against the
droplet's memory and vCPUs (pricing.py's size table, or what the slug names).

The figures come from benchmarks/student_server.py: the real TLJH 2.0.0 in a test droplet, the
JupyterLab its user environment runs, two students side by side (README: "How big a droplet").
Memory is what limits a class: an idle server uses next to no CPU, and a working one uses a core in
bursts of a second or two. A limit (hub.memory_limit) is a ceiling, not a reservation: each server
uses what it needs up to it, so a class is sized by what working servers use, and a limit only
matters when it is below that (the kernel is stopped) or above the droplet (it protects nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

from classimage.pipeline import pricing, units

# Measured with benchmarks/student_server.py (two runs of two students, 2026-11-27), PSS in MiB:
# each process's own pages and its share of those it shares, so N servers add up to N times this.
SYSTEM_MIB = 320  # the hub, traefik, the culler, classimage's services and the system (264 with no
#                   student; 310 once servers run, traefik's routes and the hub's caches grown)
IDLE_MIB = 115  # a student's server, JupyterLab loaded, nothing running (112)
WORKING_MIB = 260  # the same after a data-analysis lesson in a notebook: numpy, pandas, matplotlib
#                    imported, a million-row table made, grouped and plotted (252 to 258)
# The kernel, its page cache (the environment's libraries every server reads) and room for a
# working student's peaks: the share of a droplet's memory left out of the students' count.
HEADROOM = 0.15


@dataclass(frozen=True)
class Fit:
    size: pricing.Size
    working: int  # students working at once that fit
    idle: int  # students with idle servers that fit
    each_mib: int  # what one working student's server was counted at


def per_student_mib(memory_limit: str | None) -> int:
    """What one working student's server uses: the measured figure, or the limit when lower (the
    server is stopped at it)."""
    limit = units.memory_bytes(memory_limit) // 2**20 if memory_limit is not None else 0
    return min(WORKING_MIB, limit) if limit > 0 else WORKING_MIB  # 0 (or under a MiB): no limit to go by


def room_mib(size: pricing.Size) -> int:
    """What a droplet has for students' servers: its memory but the headroom and the system's."""
    return int(size.memory_mib * (1 - HEADROOM) - SYSTEM_MIB)


def fit(size: pricing.Size, memory_limit: str | None) -> Fit:
    each = per_student_mib(memory_limit)
    room = room_mib(size)
    return Fit(size, max(0, room // each), max(0, room // IDLE_MIB), each)


def smallest(students: int, memory_limit: str | None) -> Fit | None:
    """The cheapest size of the price table that holds `students` working at once."""
    for size in sorted(pricing.SIZES.values(), key=lambda s: (s.monthly or 0, s.memory_mib)):
        found = fit(size, memory_limit)
        if found.working >= students:
            return found
    return None


def capacity(slug: str, memory_limit: str | None, students: int | None) -> str:
    """One line on how many students the droplet holds, and whether the class fits."""
    size = pricing.size(slug)
    if size is None:
        return f"droplet {slug}: a size classimage does not know, so it cannot say how many students it holds"
    found = fit(size, memory_limit)
    counted = "as measured" if found.each_mib == WORKING_MIB else "its hub.memory_limit, lower than measured"
    text = (
        f"droplet {slug} ({size.memory_mib / 1024:g} GiB, {size.vcpus} vCPU): about {found.working} students working "
        f"at once (each working server counted at {found.each_mib} MiB, {counted}), {found.idle} with idle servers"
    )
    if students is None:
        return text + "; course.students says how many yours has, and validate checks that they fit"
    return text + f"; your {students} (course.students) " + ("fit" if found.working >= students else "do not fit")


def problems(
    slug: str | None, memory_limit: str | None, cpu_limit: float | None, students: int | None
) -> list[tuple[str, str, str]]:
    """(key, what is wrong, how to fix it) for each way the class and its limits do not fit the droplet
    (`slug` None: the spec's droplet.size is not one, which the schema reports)."""
    size = pricing.size(slug) if slug is not None else None
    if size is None:
        return []
    found: list[tuple[str, str, str]] = []
    gib = f"{size.memory_mib / 1024:g} GiB"
    if memory_limit is not None:
        limit_mib = units.memory_bytes(memory_limit) // 2**20
        room = room_mib(size)
        if limit_mib > room:
            found.append(
                (
                    "hub.memory_limit",
                    f"{memory_limit} per student is more than droplet {slug} ({gib}) has for all its students "
                    f"(about {max(0, room)} MiB once the hub, the system and the kernel have theirs): one student "
                    "could take it all, and the limit would stop nothing",
                    f"give at most {max(0, room) // 128 * 128}M, or a bigger droplet.size",
                )
            )
        elif limit_mib < WORKING_MIB:
            found.append(
                (
                    "hub.memory_limit",
                    f"{memory_limit} is less than a working student's server was measured to use ({WORKING_MIB} MiB "
                    "with numpy, pandas and matplotlib): their kernels will be stopped mid-lesson",
                    "give at least 512M, 1G for a data-analysis course",
                )
            )
    if cpu_limit is not None and cpu_limit > size.vcpus:
        found.append(
            (
                "hub.cpu_limit",
                f"{cpu_limit:g} CPUs per student is more than droplet {slug} has ({size.vcpus} vCPU)",
                f"give at most {size.vcpus}, or a bigger droplet.size",
            )
        )
    if students is not None:
        holds = fit(size, memory_limit)
        if holds.working < students:
            need = (SYSTEM_MIB + students * holds.each_mib) / (1 - HEADROOM)
            better = smallest(students, memory_limit)
            instead = (
                f"choose droplet.size {better.size.slug}: about {better.working} at once, "
                f"{pricing.money(better.size.monthly)} a month"
                if better
                else "no Basic droplet holds them: see README, When the class outgrows one droplet"
            )
            found.append(
                (
                    "droplet.size",
                    f"{students} students working at once need about {need / 1024:.1f} GiB ({holds.each_mib} MiB "
                    f"each, as measured, {SYSTEM_MIB} MiB for the hub and the system, {HEADROOM:.0%} for the "
                    f"kernel and its cache) but {slug} has {gib}: it holds about {holds.working}",
                    instead,
                )
            )
    return found


def table() -> str:
    """The README's sizing table (a test keeps the two the same): each size of the price table, how
    many students it holds working at once and with idle servers, with the default limit."""
    rows = [
        "| droplet size | memory | vCPUs | students working at once | with idle servers | a month |",
        "|---|---|---|---|---|---|",
    ]
    for size in sorted(pricing.SIZES.values(), key=lambda s: (s.memory_mib, s.vcpus)):
        found = fit(size, None)
        if found.working:
            rows.append(
                f"| `{size.slug}` | {size.memory_mib / 1024:g} GiB | {size.vcpus} | {found.working} | {found.idle} "
                f"| {pricing.money(size.monthly)} |"
            )
    return "\n".join(rows) + "\n"
