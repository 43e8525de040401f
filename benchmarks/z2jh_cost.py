"""What a class costs a month at DigitalOcean: one droplet (classimage's default) against the same
spec on Kubernetes (render --target z2jh), for 30 and 200 students. Prices are DigitalOcean's
documented list prices (sources below); the packing of students onto nodes is this script's
assumption, stated with it. Run: python benchmarks/z2jh_cost.py"""

from __future__ import annotations

import math

# DigitalOcean's documented prices, US dollars a month.
DROPLET = {"s-2vcpu-4gb": 24.0, "s-4vcpu-8gb": 48.0, "s-8vcpu-16gb": 96.0}  # Basic droplets (1)
VOLUME_GIB = 0.10  # block storage per GiB (2); DOKS volumes cost the same (3)
LOAD_BALANCER = 10.0  # one node (4); the chart's proxy-public Service makes one
REGISTRY_BASIC = 5.0  # container registry, Basic: 5 GiB, enough for one repo2docker image (5)
CONTROL_PLANE = 0.0  # DOKS's control plane is free; nodes cost what droplets cost (3)
SOURCES = (
    "(1) https://www.digitalocean.com/pricing/droplets (Basic, Regular)",
    "(2) https://docs.digitalocean.com/products/volumes/details/pricing/",
    "(3) https://docs.digitalocean.com/products/kubernetes/details/pricing/",
    "(4) https://docs.digitalocean.com/products/networking/load-balancers/",
    "(5) https://docs.digitalocean.com/products/container-registry/details/pricing/",
)
# Assumptions (not prices): each s-4vcpu-8gb node gives students about 6 GiB after Kubernetes's
# and DigitalOcean's own pods (check `kubectl describe node`, Allocatable); the spec's defaults
# reserve 512 MiB (z2jh.memory_guarantee) and a 1 GiB volume (z2jh.home_gigabytes) per student.
NODE, NODE_GIB_FOR_STUDENTS, GUARANTEE_GIB, HOME_GIB, HUB_GIB = "s-4vcpu-8gb", 6.0, 0.5, 1, 1


def droplet(students: int) -> float:
    """classimage's droplet for about 30: s-2vcpu-4gb and its 20 GiB class volume."""
    return DROPLET["s-2vcpu-4gb"] + 20 * VOLUME_GIB if students <= 30 else math.nan


def cluster(students: int, running: int) -> tuple[int, float]:
    """Nodes and dollars with `running` servers at once (the node pool scales between 1 and enough)."""
    per_node = int(NODE_GIB_FOR_STUDENTS // GUARANTEE_GIB)
    nodes = max(1, math.ceil(running / per_node))
    fixed = CONTROL_PLANE + LOAD_BALANCER + REGISTRY_BASIC + (students * HOME_GIB + HUB_GIB) * VOLUME_GIB
    return nodes, nodes * DROPLET[NODE] + fixed


def main() -> None:
    print(f"{'students':>8}  {'one droplet':>12}  {'z2jh, all running':>24}  {'z2jh, all idle':>20}")
    for students in (30, 200):
        busy_nodes, busy = cluster(students, students)
        idle_nodes, idle = cluster(students, 0)
        one = droplet(students)
        print(f"{students:>8}  {'n/a' if math.isnan(one) else f'${one:.2f}':>12}  "
              f"{f'${busy:.2f} ({busy_nodes} nodes)':>24}  {f'${idle:.2f} ({idle_nodes} node)':>20}")
    print("a month, US dollars; 'all running' keeps every student's server up all month (the ceiling);")
    print("no single Basic droplet (16 GiB at most) holds 200 students at 512 MiB each")
    print("\n".join(SOURCES))


if __name__ == "__main__":
    main()
