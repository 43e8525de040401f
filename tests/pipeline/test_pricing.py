"""What a class costs (classimage/pipeline/pricing.py) and what a droplet holds (classimage/pipeline/sizing.py), on
DigitalOcean's own JSON shapes (the API description's size fields) and the spec's defaults."""

from __future__ import annotations

import pytest

from conftest import REPO, cli
from classimage.pipeline import pricing, sizing

API_SIZE = {"slug": "g-2vcpu-8gb", "memory": 8192, "vcpus": 2, "disk": 25, "transfer": 4.0, "price_monthly": 63.0,
            "price_hourly": 0.09375, "regions": ["nyc3"], "available": True, "description": "General Purpose"}


def test_a_size_from_the_api_wins_then_the_table_then_what_the_slug_names():
    assert pricing.size("g-2vcpu-8gb", [API_SIZE]) == pricing.Size("g-2vcpu-8gb", 2, 8192, 25, 63.0)
    assert pricing.size("s-2vcpu-4gb") == pricing.Size("s-2vcpu-4gb", 2, 4096, 80, 24.0)
    assert pricing.size("s-2vcpu-4gb", [{**API_SIZE, "slug": "s-2vcpu-4gb", "price_monthly": 25.0}]).monthly == 25.0
    assert pricing.size("s-4vcpu-16gb-amd") == pricing.Size("s-4vcpu-16gb-amd", 4, 16384, None, None)
    assert pricing.size("m-2vcpu-16gb").memory_mib == 16384
    assert pricing.size("c-2") is None  # its slug says nothing: nothing is guessed


def test_what_up_makes_with_the_defaults_costs_26_to_34_40():
    items = pricing.plan("s-2vcpu-4gb", "auto", 20, 7)
    assert [item.what for item in items] == ["droplet s-2vcpu-4gb", "volume, 20 GiB", "backups, the newest 7",
                                             "reserved IP"]
    assert pricing.total(items) == (26.0, pytest.approx(34.4))
    assert pricing.lines(items)[0] == "  in all                 $26.00 to $34.40 a month"


def test_without_a_volume_only_the_droplet_and_an_unknown_price_stays_unknown():
    assert pricing.total(pricing.plan("s-1vcpu-1gb", "none", 20, 7)) == (6.0, 6.0)
    unknown = pricing.plan("c-2", "device", 20, 7)
    assert pricing.total(unknown) == (None, None)
    assert pricing.lines(unknown) == ["  in all       unknown a month",
                                      "  droplet c-2  unknown (a size this classimage has no price for)"]
    priced = pricing.plan("g-2vcpu-8gb", "none", 20, 7, [API_SIZE])
    assert priced[0].monthly == 63.0 and priced[0].note == "DigitalOcean's API"


def test_what_exists_is_priced_from_digitaloceans_json():
    droplet = {"size_slug": "s-2vcpu-4gb", "size": {"price_monthly": 24.0}}
    items = pricing.existing([droplet], [{"size_gigabytes": 30}], 12.5, {"ip": "198.51.100.7", "droplet": None})
    assert [(item.what, item.monthly) for item in items] == [
        ("droplet s-2vcpu-4gb", 24.0), ("volume 30 GiB", 3.0), ("snapshots 12.5 GiB", 0.75),
        ("reserved IP, unassigned", 5.0)]
    assigned = pricing.existing([], [], 0, {"ip": "198.51.100.7", "droplet": {"id": 1}})
    assert assigned == []


@pytest.mark.parametrize("slug, working, idle", [("s-1vcpu-1gb", 2, 4), ("s-2vcpu-4gb", 12, 27),
                                                 ("s-4vcpu-8gb", 25, 57), ("s-8vcpu-16gb", 52, 118)])
def test_how_many_students_a_droplet_holds(slug, working, idle):
    found = sizing.fit(pricing.size(slug), "1G")
    assert (found.working, found.idle) == (working, idle)
    # one more than it holds needs more memory than it has for students
    assert sizing.SYSTEM_MIB + (working + 1) * sizing.WORKING_MIB > found.size.memory_mib * (1 - sizing.HEADROOM)


def test_a_limit_below_what_a_working_server_uses_counts_as_the_limit():
    assert sizing.per_student_mib("256M") == 256
    assert sizing.per_student_mib(None) == sizing.per_student_mib("4G") == sizing.WORKING_MIB


def test_the_smallest_size_that_holds_a_class():
    assert sizing.smallest(12, "1G").size.slug == "s-2vcpu-4gb"
    assert sizing.smallest(13, "1G").size.slug == "s-4vcpu-8gb"
    assert sizing.smallest(500, "1G") is None


def test_render_prints_the_cost_and_what_the_droplet_holds(tmp_path):
    result = cli("render", str(REPO / "examples" / "minimal.yaml"), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.decode().splitlines()
    assert "  in all                 $26.00 to $34.40 a month" in lines
    assert any(line.startswith("droplet s-2vcpu-4gb (4 GiB, 2 vCPU): about 12 students working at once")
               for line in lines)


def test_the_class_size_changes_nothing_on_a_droplet_so_not_the_spec_digest(tmp_path):
    from classimage.pipeline import spec

    text = "course: {name: X, slug: xx}\nhub: {admins: [a]}\n"
    sized = text.replace("slug: xx}", "slug: xx, students: 40}")
    assert spec.load_bytes(sized.encode(), "s.yaml").spec.course.students == 40
    assert spec.load_bytes(sized.encode(), "s.yaml").digest == spec.load_bytes(text.encode(), "s.yaml").digest
