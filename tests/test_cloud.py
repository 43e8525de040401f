"""The cloud verbs (up, status, down) against the DigitalOcean API stand-in (tests/do_standin.py),
which checks every request and response against DigitalOcean's published API description. Here:
what `up` decides (tables), and every way the API can refuse; the end-to-end runs, with droplets
running the real TLJH, are in test_cloud_droplets.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import course_repo
import do_standin
from conftest import EXAMPLES, REPO
from classimage import cloud, digitalocean, plan
from classimage.cloud import Change, Deployment, Found, Names

NAMES = Names("geo101")
WANTED = Deployment("ubuntu-24-04-x64", None, plan.FULL, "#cloud-config\n", "s-2vcpu-4gb", "nyc3", ())
TAGGED = {"id": 7, "name": "geo101", "tags": ["classimage", NAMES.tag, NAMES.deploy_prefix + WANTED.digest]}
OLD = {"id": 6, "name": "geo101", "tags": ["classimage", NAMES.tag, NAMES.deploy_prefix + "0" * 16]}
VOLUME = {"id": "v1", "name": NAMES.volume, "droplet_ids": [7], "size_gigabytes": 20, "created_at": "2026-09-01T00:00:00Z"}
IP_ON_7 = {"ip": "198.51.100.10", "droplet": {"id": 7}}
FIREWALL = {"id": "f1", "name": NAMES.firewall}


@pytest.mark.parametrize("found, dns, records, expected", [
    (Found([], None, None, None, []), None, None, ["volume", "ip", "droplet", "assign", "firewall"]),
    (Found([TAGGED], VOLUME, IP_ON_7, FIREWALL, []), None, None, []),  # nothing to change
    (Found([OLD], VOLUME, {"ip": "198.51.100.10", "droplet": {"id": 6}}, FIREWALL, []), None, None,
     ["replace", "assign"]),
    (Found([TAGGED], VOLUME, {"ip": "198.51.100.10", "droplet": None}, FIREWALL, []), None, None, ["assign"]),
    (Found([TAGGED, OLD], VOLUME, IP_ON_7, FIREWALL, []), None, None, ["cleanup"]),
    (Found([TAGGED], VOLUME, IP_ON_7, None, []), None, None, ["firewall"]),
    (Found([TAGGED], VOLUME, IP_ON_7, FIREWALL, []), ("example.edu", "hub"), [], ["dns"]),
    (Found([TAGGED], VOLUME, IP_ON_7, FIREWALL, []), ("example.edu", "hub"), [{"data": "198.51.100.10"}], []),
    (Found([TAGGED], VOLUME, IP_ON_7, FIREWALL, []), ("example.edu", "hub"), [{"data": "203.0.113.9"}], ["dns"]),
])
def test_what_up_changes(found, dns, records, expected):
    assert [c.what for c in cloud.changes(found, WANTED, NAMES, dns, records)] == expected


@pytest.mark.parametrize("volume, size, expected", [
    (None, None, ["ip", "droplet", "assign", "firewall"]),  # storage.type none: no volume at all
    (VOLUME, 20, []),
    (VOLUME, 30, ["resize"]),  # grown, never made anew
    (VOLUME, 10, []),  # volumes cannot shrink: kept (up says so)
    (None, 20, ["volume", "ip", "droplet", "assign", "firewall"]),
])
def test_what_up_does_with_the_class_volume(volume, size, expected):
    found = Found([TAGGED] if volume else [], volume, IP_ON_7 if volume else None, FIREWALL if volume else None, [])
    assert [c.what for c in cloud.changes(found, WANTED, NAMES, None, None, size)] == expected


RESTORED = {"id": "v2", "name": NAMES.restored("20261020-101010"), "droplet_ids": [], "created_at": "2026-10-20T10:10:10Z"}
OLDER = {"id": "v0", "name": NAMES.volume, "droplet_ids": [], "created_at": "2026-08-01T00:00:00Z"}


@pytest.mark.parametrize("volumes, droplets, expected", [
    ([], [], None),
    ([VOLUME, RESTORED], [TAGGED], "v1"),  # the one the class's droplet has, though older
    ([VOLUME | {"droplet_ids": []}, RESTORED], [], "v2"),  # none attached (after down): the newest
    ([OLDER, VOLUME | {"droplet_ids": [99]}], [TAGGED], "v1"),  # attached elsewhere still beats older
])
def test_which_volume_holds_the_class(volumes, droplets, expected):
    assert (cloud.current_volume(volumes, droplets) or {}).get("id") == expected


@pytest.mark.parametrize("name, volume, backup", [
    ("geo101-data", True, False),
    ("geo101-data-20261020-101010", True, False),
    ("geo101-backup-20261020-101010", False, True),
    ("geo101-data-data", False, False),  # course geo101-data's volume
    ("geo101-backup-backup-20261020-101010", False, False),  # course geo101-backup's backup
    ("geo101-data-20261020-1010", False, False),
    ("geo1-data", False, False),
])
def test_what_is_the_courses(name, volume, backup):
    assert (NAMES.is_volume(name), NAMES.is_backup(name)) == (volume, backup)


def test_a_newer_snapshot_is_taken_only_when_baked_from_this_spec():
    snapshots = [{"name": "geo101-aaaa-20261120", "created_at": "2026-11-20T00:00:00Z"},
                 {"name": "geo101-bbbb-20261125", "created_at": "2026-11-25T00:00:00Z"},
                 {"name": "geo101-aaaa-20261124", "created_at": "2026-11-24T00:00:00Z"}]
    ordered = sorted(snapshots, key=lambda s: s["created_at"], reverse=True)
    assert cloud.choose_snapshot(ordered, NAMES, "aaaa")["name"] == "geo101-aaaa-20261124"
    assert cloud.choose_snapshot(ordered, NAMES, "cccc") is None
    assert cloud.choose_snapshot(ordered, Names("geo"), "aaaa") is None  # geo101's are not geo's


def test_the_deployment_digest_follows_what_the_droplet_is_made_with():
    changed = [Deployment(*(value if i != n else other for i, value in enumerate(WANTED.__dict__.values())))
               for n, other in enumerate([1234, None, plan.FULL, "#cloud-config\n#x\n", "s-1vcpu-1gb", "fra1", ("k",)])]
    digests = {d.digest for d in changed if d != WANTED}
    assert WANTED.digest not in digests and len(digests) == len([d for d in changed if d != WANTED])


def test_the_status_token_is_derived_not_stored():
    token = cloud.status_token("dop_v1_secret", "geo101", "abc")
    assert token == cloud.status_token("dop_v1_secret", "geo101", "abc")
    assert token != cloud.status_token("dop_v1_other", "geo101", "abc") != cloud.status_token("dop_v1_secret", "x", "abc")
    assert "dop_v1_secret" not in token


@pytest.mark.parametrize("status, body, expected", [
    (401, '{"id": "unauthorized", "message": "Unable to authenticate you"}', "refused the token"),
    (403, '{"id": "forbidden", "message": "You are not authorized"}', "read and write scope"),
    (422, '{"id": "unprocessable_entity", "message": "creating this/these droplet(s) will exceed your droplet limit"}',
     "raise your droplet limit"),
    (422, '{"id": "unprocessable_entity", "message": "Size is not available in this region."}',
     "another droplet.size"),
    (429, '{"id": "too_many_requests", "message": "API Rate limit exceeded."}', "5,000 requests an hour"),
    (503, '{"id": "server_error", "message": "Unexpected server-side error"}', "finishes what is half done"),
])
def test_refusals_say_what_to_change(status, body, expected):
    assert expected in digitalocean.explain("creating droplet geo101", status, body)


# -- against the stand-in --------------------------------------------------------------------------

@pytest.fixture
def standin(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the stand-in's volumes are loop devices (root)")
    ca = course_repo.TestCA(tmp_path / "ca")
    machines = do_standin.Machines(tmp_path / "cloud", layers=lambda: pytest.fail("no droplet boots in these tests"))
    with do_standin.StandIn(tmp_path / "cloud", machines, ca) as api:
        api.bundle = do_standin.ca_bundle(ca, tmp_path)
        yield api
    assert api.violations == [], "\n".join(api.violations)


def classimage(api, *args: str, token: str = do_standin.TOKEN, timeout: float = 120, **extra) -> subprocess.CompletedProcess:
    """`python -m classimage ARGS` against the stand-in, as an instructor runs it."""
    environment = dict(os.environ, PYTHONPATH=str(REPO), DIGITALOCEAN_API_URL=api.url, DIGITALOCEAN_TOKEN=token,
                       REQUESTS_CA_BUNDLE=str(api.bundle),
                       CLASSIMAGE_ADMIN_HASHES=json.dumps({"instructor": "$2b$12$" + "a" * 53}), **extra)
    return subprocess.run([sys.executable, "-m", "classimage", *args], capture_output=True, text=True,
                          timeout=timeout, env=environment)


def spec_file(tmp_path, **droplet) -> Path:
    data = yaml.safe_load(EXAMPLES[0].read_text())
    data["droplet"] = {"region": "nyc3", "size": "s-2vcpu-4gb", **droplet}
    path = tmp_path / "course.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_bad_token_is_refused_before_anything_changes(standin, tmp_path):
    result = classimage(standin, "up", str(spec_file(tmp_path)), token="dop_v1_wrong")
    assert result.returncode == 4 and "DigitalOcean refused the token" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert standin.count("POST") == 0


def test_no_token_is_a_usage_error(standin, tmp_path):
    result = classimage(standin, "status", str(spec_file(tmp_path)), token="")
    assert result.returncode == 2 and "set DIGITALOCEAN_TOKEN" in result.stderr
    assert standin.requests == []


def test_a_size_the_region_lacks_is_refused_before_anything_is_made(standin, tmp_path):
    result = classimage(standin, "up", str(spec_file(tmp_path, region="sgp1", size="s-4vcpu-8gb")))
    assert result.returncode == 4, result.stderr
    assert "size s-4vcpu-8gb is not offered in sgp1" in result.stderr and "fra1, nyc3" in result.stderr
    assert standin.count("POST") == 0


def test_an_unknown_ssh_key_is_refused_before_anything_is_made(standin, tmp_path):
    result = classimage(standin, "up", str(spec_file(tmp_path, ssh_keys=["aa:" * 15 + "aa"])))
    assert result.returncode == 4 and "no SSH key aa:aa" in result.stderr and "droplet.ssh_keys" in result.stderr
    assert standin.count("POST") == 0


def test_the_droplet_limit(standin, tmp_path):
    standin.droplet_limit = 0
    result = classimage(standin, "up", str(spec_file(tmp_path)))
    assert result.returncode == 4, result.stderr
    assert "raise your droplet limit" in result.stderr and "Traceback" not in result.stderr
    # what was made before the refusal is found, not made again, by the next run
    again = classimage(standin, "up", str(spec_file(tmp_path)), "--dry-run")
    assert "would create droplet" in again.stdout and "create the class's data volume" not in again.stdout


def test_rate_limits_and_server_errors_are_retried(standin, tmp_path):
    standin.fail("GET", r"^/v2/sizes$", 429, "too_many_requests", "API Rate limit exceeded.", times=2,
                 headers={"Retry-After": "1"})
    standin.fail("GET", r"^/v2/droplets$", 503, "server_error", "Unexpected server-side error", times=1)
    result = classimage(standin, "up", str(spec_file(tmp_path)), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert [status for method, path, status in standin.requests if path == "/v2/sizes"] == [429, 429, 200]
    assert "would create the class's data volume" in result.stdout


def test_a_rate_limit_that_lasts_is_reported_with_what_to_do(standin, tmp_path):
    standin.fail("GET", r"^/v2/sizes$", 429, "too_many_requests", "API Rate limit exceeded.", times=100,
                 headers={"Retry-After": "0"})
    result = classimage(standin, "up", str(spec_file(tmp_path)))
    assert result.returncode == 4 and "rate limit is used up" in result.stderr, result.stderr
    assert standin.count("GET") == digitalocean.RETRIES + 1


def test_dry_run_changes_nothing(standin, tmp_path):
    result = classimage(standin, "up", str(spec_file(tmp_path)), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would create the class's data volume geo101" not in result.stdout  # the spec's slug is data101
    assert "would create the class's data volume data101-data" in result.stdout
    assert standin.count() > 0 and standin.count("POST") == standin.count("DELETE") == standin.count("PUT") == 0


def test_interrupted_up_leaves_what_it_made_for_the_next_to_finish(standin, tmp_path):
    """Ctrl-C after the volume and the address were made: the next `up` finds both."""
    standin.droplet_limit = 10
    environment = dict(os.environ, PYTHONPATH=str(REPO), DIGITALOCEAN_API_URL=standin.url,
                       DIGITALOCEAN_TOKEN=do_standin.TOKEN, REQUESTS_CA_BUNDLE=str(standin.bundle),
                       CLASSIMAGE_ADMIN_HASHES=json.dumps({"instructor": "$2b$12$" + "a" * 53}))
    standin.fail("POST", r"^/v2/droplets$", 503, "server_error", "slow", times=100, headers={"Retry-After": "5"})
    process = subprocess.Popen([sys.executable, "-m", "classimage", "up", str(spec_file(tmp_path))], env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(p == "/v2/droplets" and m == "POST" for m, p, _ in standin.requests):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130 and "run the same command again" in err, err
    assert "Traceback" not in err
    standin.faults.clear()
    again = classimage(standin, "up", str(spec_file(tmp_path)), "--dry-run")
    assert again.returncode == 0
    assert "would create droplet" in again.stdout
    assert "volume" not in again.stdout and "reserve an IP" not in again.stdout  # found, not made again


def test_status_and_down_with_nothing_there(standin, tmp_path):
    status = classimage(standin, "status", str(spec_file(tmp_path)))
    assert status.returncode == 3 and "droplet: none" in status.stdout and "monthly cost: $0.00" in status.stdout
    down = classimage(standin, "down", str(spec_file(tmp_path)))
    assert down.returncode == 0 and "nothing left" in down.stdout
    refused = classimage(standin, "down", str(spec_file(tmp_path)), "--delete-data")
    assert refused.returncode == 2 and "--yes" in refused.stderr


def storage_spec(tmp_path, **storage) -> Path:
    path = spec_file(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["storage"] = storage
    path.write_text(yaml.safe_dump(data))
    return path


def test_backups_keep_the_newest_few_and_restore_names_them(standin, tmp_path):
    """An unattached volume (after `down`) is backed up at once; each backup deletes those beyond
    storage.keep_backups; restore finds a backup by id or name and says what it would do."""
    path = storage_spec(tmp_path, keep_backups=2)
    do_standin.create_volume(standin, {}, {"name": "data101-data", "region": "nyc3", "size_gigabytes": 1})
    made = []
    for _ in range(3):
        result = classimage(standin, "backup", str(path))
        assert result.returncode == 0, result.stderr
        assert "data101-data is not attached: its data is at rest" in result.stdout
        made.append(next(s["id"] for s in standin.volume_snapshots.values() if s["id"] not in made))
        time.sleep(1.1)  # backups are named by the second
    assert sorted(standin.volume_snapshots) == sorted(made[1:])  # the oldest was deleted
    assert "deleting backup data101-backup-" in result.stdout and "(storage.keep_backups: 2)" in result.stdout
    name = standin.volume_snapshots[made[2]]["name"]
    for wanted in (made[2], name):
        dry = classimage(standin, "restore", str(path), "--backup", wanted, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert f"would bring backup {name} back as volume data101-data-" in dry.stdout
    missing = classimage(standin, "restore", str(path), "--backup", made[0])
    assert missing.returncode == 4 and f"no backup '{made[0]}'" in missing.stderr and name in missing.stderr
    assert standin.count("POST") == 3  # three snapshots; restore --dry-run and the refusal made nothing
    status = classimage(standin, "status", str(path))
    assert f"backup {name} ({made[2]})" in status.stdout and "volume data101-data (the class's data)" in status.stdout


def test_storage_none_or_device_keep_no_volume(standin, tmp_path):
    none = classimage(standin, "up", str(storage_spec(tmp_path, type="none")), "--dry-run")
    assert none.returncode == 0 and "volume" not in none.stdout, none.stdout
    backup = classimage(standin, "backup", str(storage_spec(tmp_path, type="none")))
    assert backup.returncode == 4 and "no data volume to back up" in backup.stderr
    device = classimage(standin, "up", str(storage_spec(tmp_path, type="device", device="/dev/vdb")), "--dry-run")
    assert device.returncode == 4 and "set storage.type to auto" in device.stderr, device.stderr
    assert standin.count("POST") == 0


def test_build_if_missing_builds_nothing_when_the_course_has_the_snapshot(standin, tmp_path):
    path = spec_file(tmp_path)
    from classimage import spec as course_spec

    loaded = course_spec.load_file(path)
    standin.add_snapshot(f"data101-{plan.bake_digest(loaded.spec)}-20261126101010", [])
    standin.add_snapshot("data101-0000000000000000-20261127101010", [])  # another spec's software
    result = classimage(standin, "build", str(path), "--if-missing", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert f"snapshot data101-{plan.bake_digest(loaded.spec)}-20261126101010" in result.stderr
    assert "nothing to build" in result.stderr and not (tmp_path / "out").exists()


def test_up_prices_the_class_with_the_apis_sizes_before_anything_is_made(standin, tmp_path, monkeypatch):
    """The cost up prints first is DigitalOcean's own price for the size (here one the price list
    does not say), with the class's volume, backups and address at the listed rates."""
    vcpus, memory, disk, _, regions = do_standin.SIZES["s-4vcpu-8gb"]
    monkeypatch.setitem(do_standin.SIZES, "s-4vcpu-8gb", (vcpus, memory, disk, 50.0, regions))
    result = classimage(standin, "up", str(spec_file(tmp_path, size="s-4vcpu-8gb")), "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert "what the class costs a month at DigitalOcean, made by `up` (droplet sizes priced by DigitalOcean's API):" \
        in lines
    assert "  droplet s-4vcpu-8gb    $50.00 (DigitalOcean's API)" in lines
    assert "  in all                 $52.00 to $60.40 a month" in lines
    assert standin.count("POST") == 0
    assert [path for method, path, status in standin.requests].count("/v2/sizes") == 1  # asked once
