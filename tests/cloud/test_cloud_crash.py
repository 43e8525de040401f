"""The crash walk: an `up` (or `restore`) stopped at any request is finished by the next one.

For a full `up` from nothing, a replacement (make before break) and a restore from a backup: a clean
run gives the reference, its requests and the account it leaves. Then, from the same account, for
each request k of that run the run is killed (SIGKILL, a real kill of its own process) right after
the stand-in carried k out, before it answered; and, separately, each request k that changes
something is carried out and answered 500, as DigitalOcean may. The same command is run again, and
the account it leaves must equal the clean run's: one droplet, one volume (and after a restore the
previous one), one reserved IP, one firewall, the same tags and backups, every volume's history the
same (the data intact: the old droplet wrote its last copy at a graceful shutdown, the new one
mounted it once, nothing was detached from a running droplet), as many of each thing made (and
billed) as by the clean run, even for a moment, and nothing a DigitalOcean description would refuse.

No droplet boots (do_standin.Paper), and the stand-in's time moves only with requests: every run of
the same command from the same account sends the same requests in the same order, so "request k" is
the same request each time. The walk prints how many crash points each verb has and how long it took.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
import yaml

import cloudrun
import course_repo
import do_standin
from conftest import EXAMPLES

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the stand-in's droplets answer on port 80 (root)")


@pytest.fixture(scope="module")
def account(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crash")
    ca = course_repo.TestCA(folder / "ca")
    paper = do_standin.Paper()
    with do_standin.StandIn(folder / "cloud", paper, ca, clock=do_standin.Ticks(), latency=do_standin.DIGITALOCEAN) \
            as api:
        api.bundle = do_standin.ca_bundle(ca, folder)
        api.folder = folder
        yield api


def specs(folder: Path) -> tuple[Path, Path]:
    """The course, and the same course with other hub settings (`up` replaces its droplet)."""
    data = yaml.safe_load(EXAMPLES[0].read_text())
    data["droplet"] = {"region": "nyc3", "size": "s-2vcpu-4gb"}
    first = folder / "course.yaml"
    first.write_text(yaml.safe_dump(data))
    data["hub"]["idle_timeout"] = "45m"
    second = folder / "course-v2.yaml"
    second.write_text(yaml.safe_dump(data))
    return first, second


def ok(api, *argv: str) -> cloudrun.Run:
    result = cloudrun.run(api, *argv)
    assert result.returncode == 0, (argv, result.stdout, result.stderr)
    return result


def prepare(api, verb: str) -> tuple[dict, list[str]]:
    """The account a verb starts from, and the command."""
    api.restore(EMPTY[id(api)])
    first, second = specs(api.folder)
    if verb == "up":
        return api.state(), ["up", str(first)]
    ok(api, "up", str(first))
    api.quiesce()
    if verb == "replace":
        return api.state(), ["up", str(second)]
    api.clock.advance(600)
    time.sleep(1.1)  # a backup is named by the second
    ok(api, "backup", str(first))
    api.quiesce()
    (backup,) = api.volume_snapshots.values()
    return api.state(), ["restore", str(first), "--backup", backup["id"]]


EMPTY: dict[int, dict] = {}


def shape(api, before: set[int]) -> dict:
    """The account, as what must be the same after every crash and finish: ids and addresses become
    what they are to the class (the droplet before, the one after), times become STAMP."""
    alive = [d for d in api.droplets.values() if d["status"] != "archive"]
    final = {d["id"] for d in alive}
    stamped = [v["name"] for v in api.volumes.values() if re.search(r"\d{8}-\d{6}$", v["name"])] and ["STAMP"]

    def role(droplet_id) -> str:
        return "before" if droplet_id in before else "after" if droplet_id in final else f"other {droplet_id}"

    def plain(text: str) -> str:  # a restored volume's name holds the time, and the user data that name
        text = re.sub(r"\d{8}-\d{6}", "STAMP", text)
        text = re.sub(r"-deploy-[0-9a-f]{16}$", "-deploy-DIGEST", text) if "STAMP" in str(stamped) else text
        text = re.sub(r"droplet (\d+)", lambda m: "droplet " + role(int(m.group(1))), text)
        return re.sub(r"ip-[\d-]+$", "ip-ADDRESS", text)

    return {
        "droplets": sorted((d["name"], d["status"], sorted(map(plain, d["tags"]))) for d in alive),
        "volumes": sorted((plain(v["name"]), v["size_gigabytes"], [role(i) for i in v["droplet_ids"]],
                           [plain(line) for line in api.machines.volumes[v["id"]]], sorted(map(plain, v["tags"])))
                          for v in api.volumes.values()),
        "addresses": sorted(role((a.get("droplet") or {}).get("id")) for a in api.reserved.values()),
        "firewalls": sorted(f["name"] for f in api.firewalls.values()),
        "tags": sorted(plain(t) for t in api.tags),
        "backups": sorted(plain(s["name"]) for s in api.volume_snapshots.values()),
    }


def walk(api, verb: str, record_property) -> None:
    started = time.monotonic()
    if id(api) not in EMPTY:
        EMPTY[id(api)] = api.state()
    initial, argv = prepare(api, verb)
    before = set(initial["droplets"])
    api.restore(initial)
    ok(api, *argv)
    sequence = [(m, p) for m, p, _ in api.requests]
    changes = [k for k, (m, _) in enumerate(sequence, 1) if m != "GET"]
    api.quiesce()
    reference, made = shape(api, before), dict(api.made)
    assert len(reference["droplets"]) == 1 and reference["addresses"] == ["after"] and len(reference["firewalls"]) == 1
    assert api.violations == [] and api.machines.hazards == []
    crashes = [("kill", k) for k in range(1, len(sequence) + 1)] + [("500", k) for k in changes]
    for how, k in crashes:
        api.restore(initial)
        if how == "kill":
            first = cloudrun.run(api, *argv, kill_after=k)
            assert first.returncode is None, (verb, how, k, first.stdout[-2000:], first.stderr)
        else:
            method, path = sequence[k - 1]
            api.fail(method, re.escape(path), 500, "server_error", "Unexpected server-side error", after=True, at=k)
            first = cloudrun.run(api, *argv)  # a 5xx hiding a success is handled by the run it happens to
            assert first.returncode == 0, (verb, how, k, sequence[k - 1], first.stdout[-2500:], first.stderr)
        assert [(m, p) for m, p, _ in api.requests[:k]] == sequence[:k], (verb, how, k)  # the same run, so far
        again = cloudrun.run(api, *argv)
        assert again.returncode == 0, (verb, how, k, sequence[k - 1], first.stdout[-1500:], first.stderr[-800:],
                                       again.stdout[-2500:], again.stderr)
        api.quiesce()
        assert shape(api, before) == reference, (verb, how, k, sequence[k - 1], again.stdout[-2500:])
        # nothing was made twice, not even for a moment (a droplet made again, then destroyed as a twin)
        assert dict(api.made) == made, (verb, how, k, sequence[k - 1], dict(api.made), made)
        assert api.violations == [] and api.machines.hazards == [], (verb, how, k, api.violations, api.machines.hazards)
    seconds = time.monotonic() - started
    record_property("figure", f"crash walk, {verb}: {len(sequence)} requests, {len(crashes)} crash points "
                              f"({len(sequence)} kills, {len(changes)} 5xx after the change), {seconds:.0f} s "
                              "(tests/cloud/test_cloud_crash.py)")


def test_crash_at_every_request_of_an_up_from_nothing(account, record_property):
    walk(account, "up", record_property)


def test_crash_at_every_request_of_a_make_before_break_replacement(account, record_property):
    walk(account, "replace", record_property)


def test_crash_at_every_request_of_a_restore(account, record_property):
    walk(account, "restore", record_property)
