"""The steps' check scripts (done already? then the step is skipped), decided by tables: the facts a
droplet would show (what `ufw status`, `dpkg-query`, `systemctl`, `iptables` and TLJH's Python
answer) in, the exit code out. Each rendered script runs for real, with bash, in a bubblewrap sandbox
whose commands are stand-ins answering from the case's facts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import EXAMPLES
from classimage.pipeline import plan, spec, templating
from classimage.droplet import provision

COMMANDS = ("ufw", "dpkg-query", "systemctl", "iptables")
# A stand-in for each command the checks ask: it answers from /tmp/facts.json, by the command's name and
# its last argument (or "*"), and exits 127 for a command the facts do not have (not installed).
ANSWER = """#!/usr/bin/python3
import json, os, sys
facts = json.load(open("/tmp/facts.json")).get(os.path.basename(sys.argv[0]))
if facts is None:
    sys.exit(127)
code, out = facts.get(sys.argv[-1], facts.get("*", [1, ""]))
sys.stdout.write(out)
sys.exit(code)
"""
UFW_ON = "Status: active\n\nTo                         Action      From\n--                         ------      ----\n" \
         "22/tcp                     ALLOW       Anywhere\n80/tcp                     ALLOW       Anywhere\n" \
         "443/tcp                    ALLOW       Anywhere\n"
MINIMAL = spec.load_file(EXAMPLES[0]).spec
CHECKS = {step.name: step.check for step in plan.steps(MINIMAL, plan.FULL) if step.check}
PACKAGES = plan.PREREQUISITES + MINIMAL.environment.apt


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A /usr/bin of links to the real one, in which a case may add TLJH's `tljh-config` link."""
    if not shutil.which("bwrap"):
        pytest.fail("bubblewrap (bwrap) is needed: apt-get install bubblewrap (.ci/run does)")
    root = tmp_path_factory.mktemp("checks")
    usr_bin = root / "usr-bin"
    usr_bin.mkdir()
    for entry in os.listdir("/usr/bin"):
        (usr_bin / entry).symlink_to(f"/tmp/real-usr-bin/{entry}")
    return root


def check(sandbox: Path, name: str, facts: dict, tljh_config: bool = False, tljh_version: str | None = None,
          present: tuple[str, ...] = ()) -> int:
    """Run the rendered check of step `name` against `facts` (and the files `present` in an empty
    /etc/systemd/system); its exit code."""
    case = sandbox / f"case-{len(list(sandbox.glob('case-*')))}"
    stand_ins, lib, opt = case / "stand-ins", case / "lib", case / "opt"
    for folder in (stand_ins, lib, opt / "tljh/hub/bin"):
        folder.mkdir(parents=True)
    for command in COMMANDS:
        (stand_ins / command).write_text(ANSWER)
        (stand_ins / command).chmod(0o755)
    facts_file = case / "facts.json"  # a regular file, bound wherever one must be present
    facts_file.write_text(json.dumps(facts))
    (lib / "check.sh").write_text(CHECKS[name])
    guard = lib / Path(provision.METADATA_GUARD).name
    guard.write_text(templating.static("metadata-guard.sh"))
    guard.chmod(0o755)
    if tljh_version is not None:  # TLJH's hub Python, answering which TLJH it has
        python = opt / "tljh/hub/bin/python3"
        python.write_text(f"#!/bin/sh\necho {tljh_version}\n" if tljh_version else "#!/bin/sh\nexit 1\n")
        python.chmod(0o755)
    link = sandbox / "usr-bin" / "tljh-config"
    if tljh_config:
        link.symlink_to("/opt/tljh/hub/bin/tljh-config")
    try:
        result = subprocess.run(
            ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
             "--ro-bind", "/usr/bin", "/tmp/real-usr-bin", "--ro-bind", str(sandbox / "usr-bin"), "/usr/bin",
             "--tmpfs", str(Path(provision.LIB).parent), "--ro-bind", str(lib), provision.LIB,
             "--ro-bind", str(opt), "/opt", "--ro-bind", str(case / "facts.json"), "/tmp/facts.json",
             "--ro-bind", str(stand_ins), "/tmp/stand-ins", "--tmpfs", "/etc/systemd/system",
             *[arg for path in present for arg in ("--ro-bind", str(facts_file), path)],
             "--unshare-all", "--die-with-parent", "--clearenv",
             "--setenv", "PATH", "/tmp/stand-ins:/usr/sbin:/usr/bin:/sbin:/bin", "/bin/bash",
             f"{provision.LIB}/check.sh"], capture_output=True, text=True, timeout=60)
    finally:
        link.unlink(missing_ok=True)
    assert "Traceback" not in result.stderr and not result.stderr.startswith("bwrap:"), result.stderr
    return result.returncode


def ufw(text: str, code: int = 0) -> dict:
    return {"ufw": {"status": [code, text]}}


@pytest.mark.parametrize("facts, done", [
    (ufw(UFW_ON), True),
    (ufw("Status: inactive\n"), False),
    (ufw(UFW_ON.replace("443/tcp", "8443/tcp")), False),  # HTTPS not let in
    (ufw(UFW_ON.replace("80/tcp                     ALLOW", "80/tcp                     DENY ")), False),
    (ufw("ERROR: You need to be root to run this script\n", 1), False),
    ({}, False),  # ufw not installed
], ids=["on", "inactive", "no-https", "http-denied", "ufw-fails", "no-ufw"])
def test_firewall_check(sandbox, facts, done):
    assert (check(sandbox, "firewall", facts) == 0) is done


def dpkg(**states: str) -> dict:
    answers = {package: [0, "ii "] for package in PACKAGES}
    for package, state in states.items():
        answers[package.replace("_", "-")] = [1, ""] if state == "unknown" else [0, state]
    return {"dpkg-query": answers}


@pytest.mark.parametrize("facts, done", [
    (dpkg(), True),
    (dpkg(ufw="rc "), False),  # removed, its configuration left
    (dpkg(git="iU "), False),  # unpacked, not configured
    (dpkg(curl="unknown"), False),  # never installed: dpkg-query fails
    ({}, False),
], ids=["all-installed", "one-removed", "one-half-installed", "one-unknown", "no-dpkg"])
def test_packages_check(sandbox, facts, done):
    assert (check(sandbox, "packages", facts) == 0) is done


GUARD_DROPINS = [f.path for s in plan.steps(MINIMAL, plan.FULL) if s.name == "metadata-guard" for f in s.files
                 if f.path.endswith(".d/classimage-metadata-guard.conf")]


@pytest.mark.parametrize("enabled, rule, dropins, done", [
    (0, 0, GUARD_DROPINS, True),
    (1, 0, GUARD_DROPINS, False),  # the unit that restores the rule at boot is not enabled
    (0, 1, GUARD_DROPINS, False),  # the rule is not in place
    (0, 0, GUARD_DROPINS[1:], False),  # the hub may start without the guard (an older snapshot's)
], ids=["in-place", "unit-disabled", "rule-missing", "hub-not-bound-to-it"])
def test_metadata_guard_check(sandbox, enabled, rule, dropins, done):
    facts = {"systemctl": {"classimage-metadata-guard.service": [enabled, ""]}, "iptables": {"REJECT": [rule, ""]}}
    assert len(GUARD_DROPINS) == 3 and GUARD_DROPINS[0].startswith("/etc/systemd/system/jupyterhub.service.d/")
    assert (check(sandbox, "metadata-guard", facts, present=tuple(dropins)) == 0) is done


UNITS = {"systemctl": {"traefik.service": [0, "[Unit]\n"]}}


@pytest.mark.parametrize("link, units, version, done", [
    (True, UNITS, MINIMAL.tljh.version, True),
    (False, UNITS, MINIMAL.tljh.version, False),  # the installer stopped before its last act
    (True, {"systemctl": {"traefik.service": [1, ""]}}, MINIMAL.tljh.version, False),  # no units
    (True, UNITS, "1.0.0", False),  # another TLJH: the pinned one must be installed
    (True, UNITS, "", False),  # the hub's Python cannot tell (a broken hub environment)
    (True, UNITS, None, False),  # no hub environment at all
], ids=["installed", "no-link", "no-units", "other-version", "broken-hub-env", "no-hub-env"])
def test_tljh_check(sandbox, link, units, version, done):
    assert (check(sandbox, "tljh", units, tljh_config=link, tljh_version=version) == 0) is done
