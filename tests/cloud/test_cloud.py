"""The cloud verbs (up, status, down, backup, restore) against the DigitalOcean API stand-in
(tests/do_standin.py), which checks every request and response against DigitalOcean's published API
description and behaves as the service does where the verbs depend on it. Here no droplet boots
(do_standin.Paper answers for them) and the stand-in's clock moves only with requests, with
DigitalOcean's latencies: what `up` decides (tables), each strictness of the service and how the
verbs meet it, make-before-break replacement read off the request log, every way the API can refuse.
The crash walk is test_cloud_crash.py; the end-to-end runs with droplets running the real TLJH are
test_cloud_droplets.py."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import cloudrun
import course_repo
import do_standin
from conftest import EXAMPLES
from classimage.pipeline import packer, plan, spec
from classimage.cloud import actions, deploy, digitalocean
from classimage.cloud.deploy import Change, Deployment
from classimage.cloud.found import Found, Names, current_volume, region_refusal, status_token

NAMES = Names("geo101")
WANTED = Deployment("debian-12-x64", None, plan.FULL, "#cloud-config\n", "s-2vcpu-4gb", "nyc3", ())
TAGGED = {"id": 7, "name": "geo101", "created_at": "2026-09-02T00:00:00Z",
          "tags": ["classimage", NAMES.tag, NAMES.deploy_prefix + WANTED.digest]}
TWIN = TAGGED | {"id": 8, "created_at": "2026-09-03T00:00:00Z"}  # made twice (an unanswered create, before)
OLD = {"id": 6, "name": "geo101", "created_at": "2026-09-01T00:00:00Z",
       "tags": ["classimage", NAMES.tag, NAMES.deploy_prefix + "0" * 16]}
VOLUME = {"id": "v1", "name": NAMES.volume, "droplet_ids": [7], "size_gigabytes": 20, "created_at": "2026-09-01T00:00:00Z"}
ON_OLD = VOLUME | {"droplet_ids": [6]}
FREE = VOLUME | {"droplet_ids": []}
IP_ON_7 = {"ip": "198.51.100.10", "droplet": {"id": 7}}
IP_ON_6 = {"ip": "198.51.100.10", "droplet": {"id": 6}}
FIREWALL = {"id": "f1", "name": NAMES.firewall}


@pytest.mark.parametrize("found, dns, records, expected", [
    (Found([], None, None, None, []), None, None, ["volume", "droplet", "ip", "firewall"]),
    (Found([TAGGED], VOLUME, IP_ON_7, FIREWALL, []), None, None, []),  # nothing to change
    # make before break: a new droplet, then the data and the address move
    (Found([OLD], ON_OLD, IP_ON_6, FIREWALL, []), None, None, ["replace", "assign"]),
    # the new one was made (an earlier `up` stopped there): the move is what is left
    (Found([OLD, TAGGED], ON_OLD, IP_ON_6, FIREWALL, []), None, None, ["move", "assign", "cleanup"]),
    # the old one let go of the volume (stopped after the detach): attach it, point the address
    (Found([OLD, TAGGED], FREE, IP_ON_6, FIREWALL, []), None, None, ["attach", "assign", "cleanup"]),
    (Found([TAGGED], VOLUME, {"ip": "198.51.100.10", "droplet": None}, FIREWALL, []), None, None, ["assign"]),
    (Found([TAGGED, OLD], VOLUME, IP_ON_7, FIREWALL, []), None, None, ["cleanup"]),
    (Found([TAGGED, TWIN], VOLUME, IP_ON_7, FIREWALL, []), None, None, ["cleanup"]),  # the twin goes
    (Found([TAGGED], VOLUME, IP_ON_7, FIREWALL, [], ip_recorded=False), None, None, ["record"]),
    (Found([TAGGED], VOLUME, IP_ON_7, None, []), None, None, ["firewall"]),
    (Found([TAGGED], VOLUME, IP_ON_7, FIREWALL, []), ("example.edu", "hub"), [], ["dns"]),
    (Found([TAGGED], VOLUME, IP_ON_7, FIREWALL, []), ("example.edu", "hub"), [{"data": "198.51.100.10"}], []),
    (Found([TAGGED], VOLUME, IP_ON_7, FIREWALL, []), ("example.edu", "hub"), [{"data": "203.0.113.9"}], ["dns"]),
])
def test_what_up_changes(found, dns, records, expected):
    assert [c.what for c in deploy.changes(found, WANTED, NAMES, dns, records)] == expected


def test_the_droplet_the_class_runs_on_is_kept_of_twins():
    current, others = deploy.serving(Found([TWIN, TAGGED], VOLUME, IP_ON_7, FIREWALL, []), WANTED, NAMES)
    assert [d["id"] for d in current] == [7, 8] and others == []  # 7 has the volume


@pytest.mark.parametrize("volume, size, expected", [
    (None, None, ["droplet", "ip", "firewall"]),  # storage.type none: no volume at all
    (VOLUME, 20, []),
    (VOLUME, 30, ["resize"]),  # grown, never made anew
    (VOLUME, 10, []),  # volumes cannot shrink: kept (up says so)
    (None, 20, ["volume", "droplet", "ip", "firewall"]),
])
def test_what_up_does_with_the_class_volume(volume, size, expected):
    found = Found([TAGGED] if volume else [], volume, IP_ON_7 if volume else None, FIREWALL if volume else None, [])
    assert [c.what for c in deploy.changes(found, WANTED, NAMES, None, None, size)] == expected


RESTORED = {"id": "v2", "name": NAMES.restored("20261020-101010"), "droplet_ids": [], "created_at": "2026-10-20T10:10:10Z"}
OLDER = {"id": "v0", "name": NAMES.volume, "droplet_ids": [], "created_at": "2026-08-01T00:00:00Z"}


@pytest.mark.parametrize("volumes, droplets, expected", [
    ([], [], None),
    ([VOLUME, RESTORED], [TAGGED], "v1"),  # the one the class's droplet has, though older
    ([VOLUME | {"droplet_ids": []}, RESTORED], [], "v2"),  # none attached (after down): the newest
    ([OLDER, VOLUME | {"droplet_ids": [99]}], [TAGGED], "v1"),  # attached elsewhere still beats older
])
def test_which_volume_holds_the_class(volumes, droplets, expected):
    assert (current_volume(volumes, droplets) or {}).get("id") == expected


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
    assert deploy.choose_snapshot(ordered, NAMES, "aaaa")["name"] == "geo101-aaaa-20261124"
    assert deploy.choose_snapshot(ordered, NAMES, "cccc") is None
    assert deploy.choose_snapshot(ordered, Names("geo"), "aaaa") is None  # geo101's are not geo's


SNAP = {"name": "geo101-aaaa-20261124", "regions": ["nyc3", "fra1"], "min_disk_size": 25}


@pytest.mark.parametrize("snapshot, region, disk, problem", [
    (SNAP, "nyc3", 25, None),
    (SNAP, "fra1", 80, None),
    (SNAP, "sgp1", 80, "not available in sgp1 (only nyc3, fra1)"),  # DigitalOcean refuses the image there
    (SNAP | {"min_disk_size": 80}, "nyc3", 25, "needs a disk of 80 GB and the droplet size has 25 GB"),
    (SNAP | {"name": "geo101-bbbb-20261124"}, "nyc3", 80, "another spec's software"),
])
def test_a_snapshot_is_chosen_by_region_and_min_disk_size(snapshot, region, disk, problem):
    found = deploy.snapshot_problem(snapshot, NAMES, "aaaa", region, disk)
    assert (found is None) if problem is None else (problem in found), found
    assert (deploy.choose_snapshot([snapshot], NAMES, "aaaa", region, disk) is snapshot) is (problem is None)


def test_the_deployment_digest_follows_what_the_droplet_is_made_with():
    changed = [Deployment(*(value if i != n else other for i, value in enumerate(WANTED.__dict__.values())))
               for n, other in enumerate([1234, None, plan.FULL, "#cloud-config\n#x\n", "s-1vcpu-1gb", "fra1", ("k",)])]
    digests = {d.digest for d in changed if d != WANTED}
    assert WANTED.digest not in digests and len(digests) == len([d for d in changed if d != WANTED])


def test_the_status_token_is_derived_not_stored():
    token = status_token("dop_v1_secret", "geo101", "abc")
    assert token == status_token("dop_v1_secret", "geo101", "abc")
    assert token != status_token("dop_v1_other", "geo101", "abc") != status_token("dop_v1_secret", "x", "abc")
    assert "dop_v1_secret" not in token


@pytest.mark.parametrize("status, body, expected", [
    (401, '{"id": "unauthorized", "message": "Unable to authenticate you"}', "refused the token"),
    (403, '{"id": "forbidden", "message": "You are not authorized"}', "read and write scope"),
    (404, '{"id": "not_found", "message": "The resource you were accessing could not be found."}',
     "run the same command again"),
    (422, '{"id": "unprocessable_entity", "message": "creating this/these droplet(s) will exceed your droplet limit"}',
     "raise your droplet limit"),
    (422, '{"id": "unprocessable_entity", "message": "Size is not available in this region."}',
     "another droplet.size"),
    (422, '{"id": "unprocessable_entity", "message": "Droplet already has a pending event."}',
     "run the same command again in a minute"),
    (429, '{"id": "too_many_requests", "message": "API Rate limit exceeded."}', "5,000 requests an hour"),
    (503, '{"id": "server_error", "message": "Unexpected server-side error"}', "finishes what is half done"),
])
def test_refusals_say_what_to_change(status, body, expected):
    assert expected in digitalocean.explain("creating droplet geo101", status, body)


NYC_VOLUME = {"name": "geo101-data", "region": {"slug": "nyc3"}, "droplet_ids": []}


@pytest.mark.parametrize("elsewhere, ip, refused", [
    ([], None, False),
    ([], {"ip": "198.51.100.10", "region": {"slug": "fra1"}}, False),  # the spec's region
    ([NYC_VOLUME], None, True),
    ([], {"ip": "198.51.100.10", "region": {"slug": "nyc3"}}, True),
])
def test_a_region_change_is_refused_with_the_way(elsewhere, ip, refused):
    found = Found([], None, ip, None, [], elsewhere=elsewhere)
    refusal = region_refusal(found, "fra1")
    assert (refusal is not None) is refused
    if refused:
        assert "cannot move a volume, its backups or a reserved IP to another region" in refusal
        assert "Set droplet.region back to nyc3" in refusal


def test_the_bake_droplet_does_not_carry_the_courses_tag():
    course = spec.load_file(EXAMPLES[0]).spec
    template = packer.files(course)[packer.TEMPLATE]
    tags = re.search(r"tags\s*=\s*(\[.*\])", template).group(1)
    assert f'"classimage-{course.course.slug}"' not in tags and f"classimage-bake:{course.course.slug}" in tags


# -- against the stand-in --------------------------------------------------------------------------

def test_two_standins_side_by_side_never_hand_out_the_same_address(tmp_path):
    """Reserved IPs are routed on the host (Machines) and a paper droplet's address is served on it:
    two test runs at once (two engineers, two xdist workers) must each have their own."""
    if os.geteuid() != 0:
        pytest.skip("the stand-in's locks are under /run (root)")
    regions = [do_standin.Machines(tmp_path / str(n), layers=lambda: pytest.fail("no droplet boots")) for n in (1, 2)]
    papers = [do_standin.Paper(), do_standin.Paper()]
    try:
        first, second = ({str(a) for a in r.reserved} for r in regions)
        assert first and second and not first & second
        first, second = ({str(a) for net in (p.public, p.reserved) for a in net} for p in papers)
        assert first and second and not first & second
    finally:
        for each in regions + papers:
            each.close()


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> tuple[course_repo.TestCA, Path]:
    """The stand-in's certificate and what the client trusts (made once: openssl takes a second)."""
    folder = tmp_path_factory.mktemp("ca")
    made = course_repo.TestCA(folder / "ca")
    return made, do_standin.ca_bundle(made, folder)


@pytest.fixture
def standin(tmp_path, ca):
    """The stand-in, with DigitalOcean's latencies on a clock that moves only with requests, and no
    droplet booting: each answers status reads as a real one would (do_standin.Paper)."""
    if os.geteuid() != 0:
        pytest.skip("the stand-in's droplets answer on port 80 of loopback addresses (root)")
    paper = do_standin.Paper()
    with do_standin.StandIn(tmp_path / "cloud", paper, ca[0], clock=do_standin.Ticks(),
                            latency=do_standin.DIGITALOCEAN) as api:
        api.bundle = ca[1]
        yield api
    assert api.violations == [], "\n".join(api.violations)
    assert paper.hazards == [], paper.hazards


def client(standin, monkeypatch) -> digitalocean.DigitalOcean:
    """DigitalOcean's client in this process, pointed at the stand-in."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(standin.bundle))
    return digitalocean.DigitalOcean(do_standin.TOKEN, standin.url)


def classimage(api, *args: str, token: str = do_standin.TOKEN, **extra) -> cloudrun.Run:
    """`classimage ARGS` against the stand-in, as an instructor runs it (forked: see cloudrun)."""
    return cloudrun.run(api, *args, DIGITALOCEAN_TOKEN=token, **extra)


def instructor(api, *args: str, timeout: float = 120, **popen) -> subprocess.Popen:
    """`python -m classimage ARGS` in a process of its own, as an instructor starts it."""
    return subprocess.Popen([sys.executable, "-m", "classimage", *args], env=cloudrun.environment(api), text=True,
                            **popen)


def spec_file(tmp_path, name: str = "course.yaml", **droplet) -> Path:
    data = yaml.safe_load(EXAMPLES[0].read_text())
    data["droplet"] = {"region": "nyc3", "size": "s-2vcpu-4gb", **droplet}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def changed(path: Path, **hub) -> Path:
    """The spec with other hub settings: `up` replaces the droplet."""
    data = yaml.safe_load(path.read_text())
    data["hub"] |= hub or {"idle_timeout": "45m"}
    new = path.with_name(path.stem + "-v2.yaml")
    new.write_text(yaml.safe_dump(data))
    return new


def changing(api, start: int = 0) -> list[tuple[str, str, int, dict | None]]:
    return [(e["method"], e["path"], e["status"], e["body"]) for e in api.log[start:] if e["method"] != "GET"]


def said(run: cloudrun.Run) -> list[str]:
    """What a run said on stderr but for the spec's warnings and what the class costs (a heading and
    its indented lines)."""
    return [line for line in run.stderr.splitlines()
            if line and not line.startswith(("warning: ", "what the class costs", "  "))]


def up(api, path: Path) -> cloudrun.Run:
    result = classimage(api, "up", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def the_class(api) -> tuple[dict, dict, dict]:
    """(the droplet, the volume, the address) of the one class in the account."""
    (droplet,) = [d for d in api.droplets.values() if d["status"] != "archive"]
    (volume,) = api.volumes.values()
    (address,) = api.reserved.values()
    return droplet, volume, address


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


def test_numeric_ssh_keys_go_as_numbers(standin, tmp_path):
    up(standin, spec_file(tmp_path, ssh_keys=["512190"]))
    (body,) = [b for m, p, s, b in changing(standin) if p == "/v2/droplets"]
    assert body["ssh_keys"] == [512190]  # as godo and Terraform send an id


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


def test_a_429_without_retry_after_is_retried_even_for_a_post(standin, tmp_path):
    """The rate limiter refuses before anything is done: repeating is safe, whatever the method. (The
    burst limit sends Retry-After; the hourly one does not: docs.digitalocean.com/notes/2023/api-rate-limit.)"""
    standin.fail("POST", r"^/v2/volumes$", 429, "too_many_requests", "API Rate limit exceeded.", times=2)
    up(standin, spec_file(tmp_path))
    assert [s for m, p, s in standin.requests if (m, p) == ("POST", "/v2/volumes")] == [429, 429, 201]
    assert len(standin.volumes) == 1


def test_a_rate_limit_that_lasts_is_reported_with_what_to_do(standin, tmp_path):
    standin.fail("GET", r"^/v2/sizes$", 429, "too_many_requests", "API Rate limit exceeded.", times=100,
                 headers={"Retry-After": "0"})
    result = classimage(standin, "up", str(spec_file(tmp_path)))
    assert result.returncode == 4 and "rate limit is used up" in result.stderr, result.stderr
    assert standin.count("GET") == digitalocean.RETRIES + 1


@pytest.mark.parametrize("method, path", [
    ("POST", r"^/v2/volumes$"), ("POST", r"^/v2/droplets$"), ("POST", r"^/v2/reserved_ips$"),
    ("POST", r"^/v2/tags$"), ("POST", r"^/v2/firewalls$"),
])
def test_a_5xx_after_a_create_makes_nothing_twice(standin, tmp_path, method, path):
    """DigitalOcean made it, then answered 500 (azure-core would have posted it again): `up` looks for
    it before posting again, so there is one of each, and nothing unfound is billed."""
    standin.fail(method, path, 500, "server_error", "Unexpected server-side error", after=True)
    result = up(standin, spec_file(tmp_path))
    assert "looking for it before trying again" in result.stdout
    # (a reserved IP for a droplet just made meets its pending attach first: 422, nothing made)
    assert [s for m, p, s in standin.requests if m == method and re.search(path, p) and s != 422] == [500]
    droplet, volume, address = the_class(standin)
    assert len(standin.firewalls) == 1 and address["droplet"]["id"] == droplet["id"]
    assert volume["droplet_ids"] == [droplet["id"]]


def test_a_404_pydo_returns_as_a_result_is_one_line_not_an_internal_error(standin, tmp_path):
    """pydo returns a droplet action's 404 body as a result (it accepts [201, 404]): the verb says what
    happened in one line, never `internal error: KeyError`."""
    up(standin, spec_file(tmp_path))
    standin.fail("POST", r"^/v2/droplets/\d+/actions$", 404, "not_found", do_standin.NOT_FOUND)
    result = classimage(standin, "up", str(changed(spec_file(tmp_path))))
    assert result.returncode == 4, result.stdout + result.stderr
    (line,) = said(result)
    assert "no such resource any more" in line and "run the same command again" in line
    assert "internal error" not in result.stderr and "KeyError" not in result.stderr
    again = up(standin, changed(spec_file(tmp_path)))  # and the next run finishes the replacement
    assert "students could not reach the hub" in again.stdout


def test_the_standin_refuses_icmp_rules_with_ports_zero_as_digitalocean_does(standin, tmp_path, monkeypatch):
    api = client(standin, monkeypatch)
    rule = {"protocol": "icmp", "destinations": {"addresses": ["0.0.0.0/0"]}}
    with pytest.raises(digitalocean.CloudError, match="positive value for ports"):
        api.create_firewall({"name": "zero", "outbound_rules": [rule | {"ports": "0"}]})
    made = api.create_firewall({"name": "icmp", "outbound_rules": [rule]})  # no ports: Terraform's form
    assert made["outbound_rules"][0]["ports"] == "0"  # and the API answers "0" for it
    up(standin, spec_file(tmp_path))
    (firewall,) = [f for f in standin.firewalls.values() if f["name"] == "classimage-data101"]
    assert {r["protocol"] for r in firewall["outbound_rules"]} == {"tcp", "udp", "icmp"}


def test_a_second_action_meets_a_pending_event_and_up_waits_it_out(standin, tmp_path, monkeypatch):
    """After a droplet is made with a volume, DigitalOcean attaches it: meanwhile every other action on
    the droplet is refused, "Droplet already has a pending event." `up` posts again with backoff."""
    up(standin, spec_file(tmp_path))
    reserve = [s for m, p, s in standin.requests if (m, p) == ("POST", "/v2/reserved_ips")]
    assert reserve[0] == 422 and reserve[-1] == 202 and set(reserve[:-1]) == {422}, reserve
    api = client(standin, monkeypatch)
    made = api.create_droplet({"name": "x", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "debian-12-x64"})
    with pytest.raises(digitalocean.PendingEvent, match="pending event"):
        api.droplet_action(made["id"], "shutdown")  # while DigitalOcean still creates it


def test_a_droplet_just_made_is_listed_a_moment_later(standin, tmp_path, monkeypatch):
    """"After couple of seconds then it actually listed" (digitalocean/api-v2 #202): a create whose
    answer was lost must look for longer than one list before making the droplet again."""
    api = client(standin, monkeypatch)
    made = api.create_droplet({"name": "x", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "debian-12-x64",
                               "tags": ["listed"]})
    assert api.droplets("listed") == []
    assert [d["id"] for d in api.droplets("listed")] == [made["id"]]  # the next request: seconds later


def test_make_before_break_in_the_request_log(standin, tmp_path):
    """The replacement, read off the stand-in's request log: the new droplet is made (without the
    class's volume) and followed until it waits for its data while the old one still serves; only
    then does the old one shut down, its volume move (detached once the old one is off: the stand-in
    records a detach from a running droplet as a hazard) and the address follow; the old one is
    destroyed last."""
    up(standin, spec_file(tmp_path))
    old, volume, address = the_class(standin)
    start = len(standin.log)
    result = up(standin, changed(spec_file(tmp_path)))
    new, volume_after, address_after = the_class(standin)
    steps = changing(standin, start)
    order = [(m, p, (b or {}).get("type"), (b or {}).get("droplet_id")) for m, p, s, b in steps if s < 300]
    assert order == [
        ("POST", "/v2/droplets", None, None),
        ("POST", f"/v2/droplets/{old['id']}/actions", "shutdown", None),
        ("POST", f"/v2/volumes/{volume['id']}/actions", "detach", old["id"]),
        ("POST", f"/v2/volumes/{volume['id']}/actions", "attach", new["id"]),
        ("POST", f"/v2/reserved_ips/{address['ip']}/actions", "assign", new["id"]),
        ("DELETE", f"/v2/droplets/{old['id']}", None, None),
    ], order
    (create,) = [b for m, p, s, b in steps if p == "/v2/droplets"]
    assert create["volumes"] == []  # made without the class's volume
    assert result.stdout.index("is ready but for the class's data") < result.stdout.index(f"stopping droplet {old['id']}")
    assert volume_after["id"] == volume["id"] and address_after["ip"] == address["ip"]
    history = standin.machines.volumes[volume["id"]]
    assert history == [f"mounted by droplet {old['id']}", f"database copied by droplet {old['id']} at shutdown",
                       f"mounted by droplet {new['id']}"]
    assert re.search(r"students could not reach the hub for \d+ s", result.stdout)


def test_make_before_break_waits_for_the_old_droplet_to_be_off_and_powers_a_hung_one_off(standin, tmp_path):
    """A shutdown action completes when the command is issued; a droplet whose guest hangs never gets
    to `off`: after SHUTDOWN_WAIT it is powered off (DigitalOcean's advice), and only then detached."""
    up(standin, spec_file(tmp_path))
    old, volume, _ = the_class(standin)
    standin.hung.add(old["id"])
    start = len(standin.log)
    result = up(standin, changed(spec_file(tmp_path)))
    steps = [(p, (b or {}).get("type")) for m, p, s, b in changing(standin, start) if s < 300]
    assert steps.index((f"/v2/droplets/{old['id']}/actions", "shutdown")) \
        < steps.index((f"/v2/droplets/{old['id']}/actions", "power_off")) \
        < steps.index((f"/v2/volumes/{volume['id']}/actions", "detach"))
    assert f"did not shut down within {actions.SHUTDOWN_WAIT:.0f} s: powering it off" in result.stdout
    # the power was cut with the class's data mounted: the one hazard, which the fixture would refuse
    assert standin.machines.hazards == [f"droplet {old['id']} powered off with the class's data mounted"]
    standin.machines.hazards.clear()


def test_make_before_break_leaves_the_class_as_it_was_when_the_new_droplet_fails(standin, tmp_path):
    up(standin, spec_file(tmp_path))
    old, volume, address = the_class(standin)
    standin.machines.fail = True
    start = len(standin.log)
    result = classimage(standin, "up", str(changed(spec_file(tmp_path))))
    assert result.returncode == 4, result.stdout + result.stderr
    assert "the class was left as it was" in result.stderr and "stand-in: this droplet fails" in result.stdout
    assert [(m, (b or {}).get("type")) for m, p, s, b in changing(standin, start)] == [("POST", None), ("DELETE", None)]
    standin.quiesce()
    assert the_class(standin) == (old, volume, address) and old["status"] == "active"


def test_make_before_break_at_the_droplet_limit_leaves_the_class_running(standin, tmp_path):
    up(standin, spec_file(tmp_path))
    standin.droplet_limit = 1
    start = len(standin.requests)
    result = classimage(standin, "up", str(changed(spec_file(tmp_path))))
    assert result.returncode == 4 and "raise your droplet limit" in result.stderr
    assert "keeps running meanwhile" in result.stderr
    droplet, _, _ = the_class(standin)
    assert droplet["status"] == "active"
    assert [(p, s) for m, p, s in standin.requests[start:] if m == "POST" and s >= 300] == [("/v2/droplets", 422)]
    assert [b for m, p, s, b in changing(standin) if (b or {}).get("type") == "shutdown"] == []


def test_a_snapshot_in_another_region_is_not_used(standin, tmp_path):
    path = spec_file(tmp_path, region="fra1")
    digest = plan.bake_digest(spec.load_file(path).spec)
    standin.add_snapshot(f"data101-{digest}-20261126101010", [], regions=["nyc3"])
    result = up(standin, path)
    assert "is not available in fra1 (only nyc3)" in result.stdout and "droplet.snapshot_regions" in result.stdout
    (body,) = [b for m, p, s, b in changing(standin) if p == "/v2/droplets"]
    assert body["image"] == "debian-12-x64"  # one-piece rather than a refusal


def test_the_standin_enforces_a_snapshots_regions_and_min_disk_size(standin, tmp_path, monkeypatch):
    image = standin.add_snapshot("data101-x-1", [], regions=["nyc3"], min_disk_size=40)
    api = client(standin, monkeypatch)
    body = {"name": "x", "region": "fra1", "size": "s-2vcpu-4gb", "image": image}
    with pytest.raises(digitalocean.CloudError, match="not available in the region fra1"):
        api.create_droplet(body)
    with pytest.raises(digitalocean.CloudError, match="min_disk_size|disk of at least 40 GB"):
        api.create_droplet(body | {"region": "nyc3", "size": "s-1vcpu-1gb"})
    assert api.create_droplet(body | {"region": "nyc3"})["status"] == "new"


def test_a_region_change_is_refused_before_anything_is_made(standin, tmp_path):
    up(standin, spec_file(tmp_path))
    made = standin.count("POST")
    result = classimage(standin, "up", str(spec_file(tmp_path, "moved.yaml", region="fra1")))
    assert result.returncode == 4 and "Set droplet.region back to nyc3" in result.stderr, result.stderr
    assert standin.count("POST") == made


def test_status_says_a_new_droplet_waits_for_the_class_volume(standin, tmp_path):
    """An `up` killed right after it asked the old droplet to shut down: `status` shows the new droplet
    waiting for the class's volume; the next `up` finishes the move."""
    up(standin, spec_file(tmp_path))
    old, _, _ = the_class(standin)
    shutdown = request_index(standin, lambda: up(standin, changed(spec_file(tmp_path))),
                             lambda e: (e["body"] or {}).get("type") == "shutdown")
    killed = cloudrun.run(standin, "up", str(changed(spec_file(tmp_path))), kill_after=shutdown)
    assert killed.returncode is None
    status = classimage(standin, "status", str(changed(spec_file(tmp_path))))
    assert re.search(r"droplet data101 \(\d+\): active.*\n    its provisioning \(at its own address\): waiting for "
                     r"the class's volume data101-data to be attached to this droplet", status.stdout), status.stdout
    up(standin, changed(spec_file(tmp_path)))
    new, volume, _ = the_class(standin)
    assert new["id"] != old["id"] and volume["droplet_ids"] == [new["id"]]


def request_index(standin, rehearse, which) -> int:
    """The position among a run's requests of the first that `which` picks: `rehearse` runs it on the
    account as it is, which is then put back (the sequence is the same every time)."""
    standin.quiesce()
    saved = standin.state()
    start = len(standin.log)
    rehearse()
    index = next(i for i, e in enumerate(standin.log[start:], 1) if which(e))
    standin.quiesce()
    standin.restore(saved)
    return index


def test_interrupted_up_leaves_what_it_made_for_the_next_to_finish(standin, tmp_path):
    """Ctrl-C while DigitalOcean makes the droplet: the stand-in interrupts the instructor's `up` at
    that request, and answers only once it has ended (no race between the signal and the run). The
    next `up` finds the volume, the droplet and all, and finishes."""
    path = spec_file(tmp_path)
    process = None

    def interrupt(count: int, method: str, where: str) -> bool:
        if (method, where) != ("POST", "/v2/droplets"):
            return False
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        return True

    standin.after_request = interrupt
    process = instructor(standin, "up", str(path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate(timeout=120)
    standin.after_request = None
    assert process.returncode == 130 and "run the same command again" in err, out + err
    assert "Traceback" not in err
    result = up(standin, path)
    assert "create the class's data volume" not in result.stdout and "creating droplet" not in result.stdout
    droplet, volume, address = the_class(standin)
    assert volume["droplet_ids"] == [droplet["id"]] and address["droplet"]["id"] == droplet["id"]


def test_a_class_droplet_found_off_is_powered_on(standin, tmp_path, monkeypatch):
    path = spec_file(tmp_path)
    up(standin, path)
    droplet, _, _ = the_class(standin)
    client(standin, monkeypatch).droplet_action(droplet["id"], "shutdown")
    standin.quiesce()
    assert droplet["status"] == "off"
    result = up(standin, path)
    assert f"powering droplet {droplet['id']} on" in result.stdout and droplet["status"] == "active"


def test_up_right_after_a_destroy_waits_for_the_droplet_to_let_go_of_the_volume(standin, tmp_path, monkeypatch):
    """A destroyed droplet is listed as `archive` for a while, still holding the class's volume: the next
    `up` makes the new droplet without it and attaches it once DigitalOcean has let go."""
    path = spec_file(tmp_path)
    up(standin, path)
    old, volume, _ = the_class(standin)
    client(standin, monkeypatch).destroy_droplet(old["id"])  # in the control panel, say
    assert standin.droplets[old["id"]]["status"] == "archive" and volume["droplet_ids"] == [old["id"]]
    result = up(standin, path)
    new, volume_after, _ = the_class(standin)
    assert new["id"] != old["id"] and volume_after["droplet_ids"] == [new["id"]]
    assert "creating droplet data101 (s-2vcpu-4gb, nyc3, debian-12-x64)" in result.stdout  # without the volume
    # destroyed by hand while it ran: the one hazard (classimage's `down` shuts it down first)
    assert standin.machines.hazards == [f"droplet {old['id']} destroyed running, with the class's data mounted"]
    standin.machines.hazards.clear()


def test_dry_run_changes_nothing(standin, tmp_path):
    result = classimage(standin, "up", str(spec_file(tmp_path)), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would create the class's data volume geo101" not in result.stdout  # the spec's slug is data101
    assert "would create the class's data volume data101-data" in result.stdout
    assert standin.count() > 0 and standin.count("POST") == standin.count("DELETE") == standin.count("PUT") == 0


def test_status_and_down_with_nothing_there(standin, tmp_path):
    status = classimage(standin, "status", str(spec_file(tmp_path)))
    assert status.returncode == 3 and "droplet: none" in status.stdout and "monthly cost: $0.00" in status.stdout
    down = classimage(standin, "down", str(spec_file(tmp_path)))
    assert down.returncode == 0 and "nothing left" in down.stdout


def test_down_shuts_the_droplet_down_before_destroying_it(standin, tmp_path):
    up(standin, spec_file(tmp_path))
    droplet, volume, _ = the_class(standin)
    start = len(standin.log)
    result = classimage(standin, "down", str(spec_file(tmp_path)))
    assert result.returncode == 0, result.stderr
    steps = [(m, p, (b or {}).get("type")) for m, p, s, b in changing(standin, start)]
    assert steps[:2] == [("POST", f"/v2/droplets/{droplet['id']}/actions", "shutdown"),
                         ("DELETE", f"/v2/droplets/{droplet['id']}", None)], steps
    assert standin.machines.volumes[volume["id"]][-1] == f"database copied by droplet {droplet['id']} at shutdown"
    standin.quiesce()
    assert not standin.droplets and len(standin.volumes) == 1 and len(standin.reserved) == 1


def test_down_delete_data_refuses_anything_but_the_courses_slug(standin, tmp_path):
    """Typed at a terminal (a pty): "yes" or "y" deletes nothing; the slug deletes the class's data.
    Without a terminal only --yes does."""
    path = spec_file(tmp_path)
    up(standin, path)

    def typed(answer: str) -> tuple[int, str]:
        leader, follower = pty.openpty()
        process = instructor(standin, "down", str(path), "--delete-data", stdin=follower,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        os.close(follower)
        os.write(leader, answer.encode() + b"\n")
        out, _ = process.communicate(timeout=120)
        os.close(leader)
        return process.returncode, out

    for answer in ("y", "yes", "Data101", "data1011"):
        code, out = typed(answer)
        assert code == 2 and "not the course's slug; nothing was deleted" in out, (answer, out)
        assert standin.volumes and standin.reserved and standin.droplets
    piped = instructor(standin, "down", str(path), "--delete-data", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    out, err = piped.communicate("data101\n", timeout=120)
    assert piped.returncode == 2 and "add --yes to confirm without a terminal" in err, err
    assert standin.volumes
    code, out = typed("data101")
    assert code == 0 and "nothing left" in out, out
    standin.quiesce()
    assert not standin.volumes and not standin.reserved and not standin.droplets


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
        standin.clock.advance(600)  # DigitalOcean snapshots a volume at most once every 10 minutes
        os.utime(path)
        import time
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


def test_a_second_backup_within_ten_minutes_is_one_line(standin, tmp_path):
    path = storage_spec(tmp_path)
    do_standin.create_volume(standin, {}, {"name": "data101-data", "region": "nyc3", "size_gigabytes": 1})
    assert classimage(standin, "backup", str(path)).returncode == 0
    import time
    time.sleep(1.1)
    again = classimage(standin, "backup", str(path))
    assert again.returncode == 4 and "once every 10 minutes" in again.stderr
    assert len(said(again)) == 1


def test_storage_none_or_device_keep_no_volume(standin, tmp_path):
    none = classimage(standin, "up", str(storage_spec(tmp_path, type="none")), "--dry-run")
    assert none.returncode == 0 and "volume" not in none.stdout, none.stdout
    backup = classimage(standin, "backup", str(storage_spec(tmp_path, type="none")))
    assert backup.returncode == 4 and "no data volume to back up" in backup.stderr
    device = classimage(standin, "up", str(storage_spec(tmp_path, type="device", device="/dev/vdb")), "--dry-run")
    assert device.returncode == 4 and "set storage.type to auto" in device.stderr, device.stderr
    assert standin.count("POST") == 0


def test_storage_none_replacement_moves_only_the_address(standin, tmp_path):
    path = storage_spec(tmp_path, type="none")
    up(standin, path)
    (old,) = standin.droplets.values()
    start = len(standin.log)
    result = up(standin, changed(path))
    assert [(m, (b or {}).get("type")) for m, p, s, b in changing(standin, start) if s < 300] == [
        ("POST", None), ("POST", "assign"), ("DELETE", None)]
    assert re.search(r"students could not reach the hub for \d+ s", result.stdout) and not standin.volumes
    standin.quiesce()
    (new,) = standin.droplets.values()
    assert new["id"] != old["id"]


def test_build_if_missing_builds_nothing_when_the_course_has_the_snapshot(standin, tmp_path):
    path = spec_file(tmp_path)
    loaded = spec.load_file(path)
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


def test_the_bake_droplet_is_not_counted_as_the_class(standin, tmp_path, monkeypatch):
    """A `build` running beside `status`, `up` or `down`: its droplet carries the bake tag, not the
    course's, so none of them takes it for the class's (nor bills, retires or destroys it)."""
    course = spec.load_file(spec_file(tmp_path)).spec
    template = packer.files(course)[packer.TEMPLATE]
    tags = yaml.safe_load(re.search(r"tags\s*=\s*(\[.*\])", template).group(1))
    api = client(standin, monkeypatch)
    bake = api.create_droplet({"name": "data101-bake", "region": "nyc3", "size": "s-1vcpu-1gb",
                               "image": "debian-12-x64", "tags": tags})
    status = classimage(standin, "status", str(spec_file(tmp_path)))
    assert "droplet: none" in status.stdout and "monthly cost: $0.00" in status.stdout
    up(standin, spec_file(tmp_path))
    classimage(standin, "down", str(spec_file(tmp_path)))
    standin.quiesce()
    assert bake["id"] in standin.droplets
