"""The README stays true: its two opening commands, the commands it shows (run, or parsed by the
real parser), its table of steps, what it says the program does; and every `--help`."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import replace

import pytest

from conftest import REPO, cli
from classimage.pipeline import plan, spec

README = (REPO / "README.md").read_text()


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, re.DOTALL)


def test_readme_opens_with_the_two_commands():
    """Install-and-render, then the tests (tests/test_fresh_debian.py runs the first on a fresh Debian 12)."""
    first = README.split("```bash\n", 1)[1].split("```", 1)[0]
    install, tests = first.splitlines()
    parts = install.split(" && ")
    assert "python3 -m venv .venv" in parts and ". .venv/bin/activate" in parts and "pip install ." in parts
    assert re.fullmatch(r"python -m classimage render examples/\w+\.yaml --out build/", parts[-1])
    assert tests == "bash .ci/run"  # as root, as the README says
    assert "python -m pytest" in (REPO / ".ci" / "run").read_text()


def test_instructor_commands_work(tmp_path):
    """Run the README's instructor blocks in a copy of the examples (pip install is the one step
    left out: the tests already run classimage from this checkout)."""
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    first, *rest = bash_blocks()
    render = first.splitlines()[0].split(" && ")[-1]
    script = "set -euo pipefail\n" + render + "\n" + "".join(rest)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path / "home"),
           "CLASSIMAGE_SECRETS": os.environ["CLASSIMAGE_SECRETS"]}
    script = script.replace("python -m classimage", f"{sys.executable} -m classimage")
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "build" / "user-data.yaml").read_text().startswith("#cloud-config")
    assert not (tmp_path / "home").exists()  # the admin's hash went to the store named for the test


def test_step_table_lists_the_steps_in_order_with_their_stages():
    cell = r" *(x?) *\|"
    rows = re.findall(rf"^\| `([a-z-]+)` \|[^\n]*\|{cell}{cell}{cell}[^\n]*\|$", README, re.MULTILINE)
    underworld = spec.load_file(REPO / "examples" / "underworld.yaml").spec
    course = replace(underworld, network=replace(underworld.network, proxy="http://proxy.example.edu:3128"))
    every: dict[str, set] = {}  # every step any course can have, in order, with its stages
    for step in plan.steps(course, None):
        every.setdefault(step.name, set()).update(step.stages)
    assert [row[0] for row in rows] == list(every)
    for name, full, bake, boot in rows:
        assert {s for s, mark in ((plan.FULL, full), (plan.BAKE, bake), (plan.BOOT, boot)) if mark} == every[name], name


# -- every command it shows, and every --help, stay true ------------------------------------------

def readme_commands() -> list[str]:
    """Every classimage command the README shows: in its code blocks and in its prose."""
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", README, re.DOTALL):
        for line in block.splitlines():
            if "python -m classimage " in line:
                found.append(line.split("python -m classimage ", 1)[1].split(" && ")[0].split("  #")[0])
    found += re.findall(r"`python -m classimage ([^`]+)`", " ".join(README.split()))
    return found


def test_every_command_the_readme_shows_parses():
    """Each is a verb and options the command line has (argparse exits on anything else)."""
    from classimage import cli as classimage_cli

    commands = readme_commands()
    assert len(commands) > 15
    parser = classimage_cli._parser()
    for command in commands:
        try:
            parser.parse_args(shlex.split(command))
        except SystemExit:
            raise AssertionError(f"the README shows `python -m classimage {command}`, which the parser refuses") from None
    shown = {shlex.split(command)[0] for command in commands}
    verbs = set(parser._subparsers._group_actions[0].choices)  # every verb the README leaves out is a gap
    assert verbs - shown <= {"restore"}, verbs - shown  # restore is named in prose with its --backup


def verbs() -> list[str]:
    from classimage import cli as classimage_cli

    return sorted(classimage_cli._parser()._subparsers._group_actions[0].choices)


@pytest.mark.parametrize("verb", verbs())
def test_every_help_names_the_program_as_it_is_run(verb, tmp_path):
    """`--help` works, and its usage line says `classimage` when run as the installed command."""
    module = cli(verb, "--help")
    assert module.returncode == 0 and module.stdout.decode().startswith(f"usage: python -m classimage {verb}")
    command = tmp_path / "classimage"  # what pip's console script does
    command.write_text(f"#!{sys.executable}\nimport sys\nfrom classimage.cli import main\nsys.exit(main())\n")
    command.chmod(0o755)
    installed = subprocess.run([str(command), verb, "--help"], capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    assert installed.returncode == 0 and installed.stdout.startswith(f"usage: classimage {verb}"), installed


def test_what_the_help_and_the_readme_say_is_what_the_program_does():
    from classimage import cli as classimage_cli
    from classimage.pipeline import admins, pricing, workflows

    render = cli("render", "--help").stdout.decode()
    named = re.search(r"also write the GitHub workflows \(([^;]+);", " ".join(render.split())).group(1)
    assert named.split(", ") == [name.removeprefix("classimage-") for name in workflows.NAMES]
    assert "Packer" in cli("build", "--help").stdout.decode() and "`build` needs [Packer]" in README
    # the exit codes, in the program's own description and in the README
    codes = {classimage_cli.OK: "done", classimage_cli.INVALID: "the spec has problems",
             classimage_cli.USAGE: "usage error", classimage_cli.FAILED: "Packer failed",
             classimage_cli.CLOUD: "DigitalOcean refused", 130: "interrupted"}
    for text in (" ".join(README.split()), " ".join(classimage_cli.__doc__.split())):
        for code, meaning in codes.items():
            assert re.search(rf"\b{code} [^,]*{meaning}", text), (code, meaning)
    assert f"at least {admins.MIN_LENGTH} characters" in README
    for rate in (pricing.VOLUME_PER_GIB_MONTH, pricing.SNAPSHOT_PER_GIB_MONTH, pricing.UNASSIGNED_IP_MONTH):
        assert pricing.money(rate) in README


def test_the_readmes_lost_password_procedure_sets_the_password_and_keeps_the_class(tmp_path):
    """What the README tells an instructor to do on a droplet whose class's data is on its own
    disk, done on the files the user data writes, with the program it ships and the real
    NativeAuthenticator: the reserved admin gets the password, and nothing else changes."""
    import json

    from jupyterhub import orm
    from nativeauthenticator.orm import UserInfo

    from classimage.pipeline import admins, tljh
    from classimage.droplet import hubaccounts, provision

    paragraph = " ".join(README.split("A lost admin password", 1)[1].split("\n\n", 1)[0].split())
    assert f"in `{provision.HUB_ACCOUNTS_PLAN}` replace the admin's hash (or `null`)" in paragraph
    assert f"run `{tljh.HUB_PYTHON} {provision.HUB_ACCOUNTS} {provision.HUB_ACCOUNTS_PLAN}`" in paragraph
    course = spec.load_file(REPO / "examples" / "minimal.yaml").spec
    plan_file = tmp_path / "hub-accounts.json"
    written = json.loads(tljh.accounts_plan(course, {}))  # as rendered before any password was set
    written.update(database=f"sqlite:///{tmp_path}/jupyterhub.sqlite", record=str(tmp_path / "record.json"))
    plan_file.write_text(json.dumps(written, indent=2) + "\n")
    run = [sys.executable, hubaccounts.__file__, str(plan_file)]
    assert subprocess.run(run, capture_output=True, text=True, check=True).stdout == "instructor: reserved\n"
    session = orm.new_session_factory(written["database"])()
    session.add(UserInfo(username="student1", password=b"x", is_authorized=True))  # the class so far
    session.commit()
    session.close()
    password = "a new password for the class"
    store = tmp_path / "store"
    result = cli("admin-password", str(REPO / "examples" / "minimal.yaml"), "--stdin",
                 env={"CLASSIMAGE_SECRETS": str(store)}, stdin=password.encode())
    assert result.returncode == 0, result.stderr
    stored = admins.parse((store / course.course.slug / "admins.yaml").read_text(), "store")["instructor"]
    plan_file.write_text(plan_file.read_text().replace('"instructor": null', f'"instructor": "{stored}"'))
    assert subprocess.run(run, capture_output=True, text=True, check=True).stdout == "instructor: password set\n"
    session = orm.new_session_factory(written["database"])()
    assert UserInfo.find(session, "instructor").is_valid_password(password)
    assert UserInfo.find(session, "student1") is not None


def test_the_sizing_and_cost_tables_are_the_programs():
    """The README's sizing table is what classimage/pipeline/sizing.py computes, its cost table what
    classimage/pipeline/pricing.py prices for the defaults: a change of either shows here."""
    from classimage.pipeline import pricing, sizing

    assert sizing.table() in README
    section = README.split("## What it costs", 1)[1].split("\n## ", 1)[0]
    items = pricing.plan("s-2vcpu-4gb", "auto", 20, 7)
    for item in items:
        assert pricing.money(item.most if item.most is not None else item.monthly) in section, item
    assert f"| in all | {pricing.span(*pricing.total(items))} |" in section
    defaults = spec.with_defaults({"course": {"name": "X", "slug": "xx"}, "hub": {"admins": ["a"]}})
    assert (defaults["droplet"]["size"], defaults["storage"]["size_gigabytes"], defaults["storage"]["keep_backups"]) \
        == ("s-2vcpu-4gb", 20, 7)


def test_the_sizing_figures_in_prose_are_sizing_pys():
    from classimage.pipeline import sizing

    section = " ".join(README.split("## How big a droplet", 1)[1].split("\n## ", 1)[0].split())
    assert (f"Counting {sizing.WORKING_MIB} MiB for each working student, {sizing.IDLE_MIB} MiB for each idle one, "
            f"{sizing.SYSTEM_MIB} MiB for the hub and the system, and {sizing.HEADROOM:.0%} of the droplet") in section
    # The schema's own word on the class its defaults suit (explain, docs/spec.md) is the same figure.
    from classimage import resources
    from classimage.pipeline import pricing

    default = sizing.fit(pricing.SIZES[spec.with_defaults(
        {"course": {"name": "X", "slug": "xx"}, "hub": {"admins": ["a"]}})["droplet"]["size"]], None)
    assert (f"a default suited to a class of about {default.working} students working at once, {default.idle} with "
            "idle servers") in resources.schema()["description"]


def test_the_default_image_is_the_one_the_test_droplets_boot():
    """Debian 12 by default, because that is what every droplet test boots; the README and the
    schema say so, and that the other images TLJH supports are not booted here."""
    from testdroplet import Recipe

    defaults = spec.with_defaults({"course": {"name": "X", "slug": "xx"}, "hub": {"admins": ["a"]}})
    assert defaults["droplet"]["image"] == "debian-12-x64" and Recipe().suite == "bookworm"  # Debian 12
    text = " ".join(README.split())
    assert "(defaults: Debian 12, `s-2vcpu-4gb`)" in text and "Debian 12 is what classimage's tests boot" in text
    assert "which classimage's tests do not boot" in text


def test_the_health_checks_actions_minutes_are_its_schedules():
    """The README's count of the Actions minutes the health check takes a month in a private
    repository is its rendered schedule's: a run every N minutes, each billed as at least a minute."""
    import yaml

    from classimage.pipeline import workflows

    minimal = REPO / "examples" / "minimal.yaml"
    flows = workflows.render(spec.load_file(minimal).spec, minimal, REPO / "examples")
    health = yaml.safe_load(flows[f"{workflows.FOLDER}/classimage-health.yml"])
    (schedule,) = health[True]["schedule"]  # YAML 1.1 reads the key `on` as true
    every = int(re.fullmatch(r"\*/(\d+) \* \* \* \*", schedule["cron"]).group(1))
    section = " ".join(README.split("## What it costs", 1)[1].split("\n## ", 1)[0].split())
    assert f"the health check alone, every {every} minutes and each run billed as at least a minute, takes about " \
           f"{30 * 24 * 60 // every:,} of them" in section
