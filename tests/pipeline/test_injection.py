"""Hostile strings end up as inert text. Proved by running what is rendered, not by reading it:

- the escaping filters round-trip arbitrary text through the real bash, Python and YAML parsers;
- a course whose every field is hostile (built past validation, so the templates alone must hold)
  has each step script run by the real bash in a bubblewrap sandbox, where the commands the steps
  call (apt-get, pip, mamba, curl, ...) record the arguments they receive: every hostile string
  must arrive byte for byte as one argument, and no canary file may appear.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import written_files
from hubprocess import tljh_source
from classimage.pipeline import links, model, plan, spec, templating, tljh, userdata
from classimage.droplet import provision

HOSTILE = (
    "$(touch /tmp/canary/dollar)",
    "`touch /tmp/canary/backtick`",
    "'; touch /tmp/canary/quote; '",
    '"; touch /tmp/canary/dquote; #',
    "a\ntouch /tmp/canary/newline",
    "x;touch${IFS}/tmp/canary/ifs",
    "x && touch /tmp/canary/and || touch /tmp/canary/or",
    "$((7*6)) ${HOME} $0 $@ !! *",
    "--help",
    "\\'\\\"\\\\",
    "é ünïcødé ✓ \u2028 \x85",
    "",
)
COMMANDS = ("apt-get", "dpkg-query", "curl", "python3", "install", "systemctl", "tljh-config",
            "iptables", "ufw", "mkdir", "sleep", "chown", "chmod", "timeout")
RECORDER = textwrap.dedent("""\
    #!/usr/bin/python3
    import json, os, sys
    with open("/tmp/record/argv.jsonl", "a") as out:
        out.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\\n")
    if os.path.basename(sys.argv[0]) == "dpkg-query":
        print("ii ", end="")  # "installed", so the check goes on to the next name
    """)


def hostile_spec() -> model.Spec:
    many = tuple(HOSTILE)
    return model.Spec(
        course=model.CourseInfo(name=HOSTILE[0] + HOSTILE[4], slug="hostile", students=None),
        hub=model.Hub(admins=many, default_app="jupyterlab", idle_timeout="1h", memory_limit="1G",
                      cpu_limit=1.0, auth=model.Auth("signup", True, 8, model.Lockout(5, "10m"), ())),
        environment=model.Environment(apt=many, conda=model.Conda(channels=many, packages=many), pip=many,
                                      python=HOSTILE[2], post_build=None, from_repo=None),
        https=model.Https(None, None, False),
        content=(model.ContentRepo(url="https://example.org/" + HOSTILE[1], branch=HOSTILE[2], open=HOSTILE[3]),),
        droplet=model.Droplet("nyc3", "s-2vcpu-4gb", "ubuntu-24-04-x64", (), ()),
        storage=model.Storage("none", 20, None, 7),
        network=model.Network(proxy=None, ca_certificates=()),
        tljh=model.Tljh(version=HOSTILE[0], bootstrap_url=HOSTILE[5]),
        workflows=model.Workflows(classimage=None),
        z2jh=model.Z2jh(image=None, home_gigabytes=10, memory_guarantee="1G", cpu_guarantee=0.5),
    )


@pytest.fixture(scope="module")
def sandbox_run(tmp_path_factory):
    """Run every step script of the hostile course in a sandbox; return the recorded commands."""
    if not shutil.which("bwrap"):
        pytest.fail("bubblewrap (bwrap) is needed: apt-get install bubblewrap (.ci/run does)")
    root = tmp_path_factory.mktemp("sandbox")
    lib, opt, record, canary, bin_dir = (root / n for n in ("lib", "opt", "record", "canary", "bin"))
    for folder in (lib, record, canary, bin_dir, opt / "tljh/user/bin", opt / "tljh/hub/bin", opt / "tljh/state"):
        folder.mkdir(parents=True)
    for target in [bin_dir / c for c in COMMANDS] + [opt / "tljh/user/bin" / c for c in ("pip", "mamba")] \
            + [opt / "tljh/hub/bin/python3", lib / Path(provision.METADATA_GUARD).relative_to(provision.LIB)]:
        target.write_text(RECORDER)
        target.chmod(0o755)
    steps = plan.steps(hostile_spec())
    scripts = []
    for step in steps:
        for text, kind in ((step.check, "check"), (step.run, "run")):
            if text:
                path = lib / f"{step.name}.{kind}.sh"
                path.write_text(text)
                scripts.append(path)
        for file in step.files:
            staged = lib / Path(file.staged).relative_to(provision.LIB)
            staged.parent.mkdir(parents=True, exist_ok=True)
            staged.write_text(file.content)
    results = []
    for script in scripts:
        inside = f"{provision.LIB}/{script.name}"
        result = subprocess.run(
            # Mount points go on tmpfs: bwrap cannot create them on the read-only root.
            ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
             "--tmpfs", str(Path(provision.LIB).parent), "--bind", str(lib), provision.LIB,
             "--bind", str(opt), "/opt", "--bind", str(record), "/tmp/record",
             "--bind", str(canary), "/tmp/canary", "--ro-bind", str(bin_dir), "/tmp/recorders",
             "--unshare-all", "--die-with-parent", "--clearenv", "--setenv", "PATH", "/tmp/recorders:/usr/bin:/bin",
             "--setenv", "HOME", "/tmp", "/bin/bash", inside],
            capture_output=True, text=True, timeout=60)
        results.append((script.name, result))
    lines = (record / "argv.jsonl").read_text().splitlines()
    return steps, [json.loads(line) for line in lines], sorted(p.name for p in canary.iterdir()), results


def calls(recorded, name):
    return [argv[1:] for argv in recorded if argv[0] == name]


def test_no_hostile_string_executes(sandbox_run):
    steps, recorded, canaries, results = sandbox_run
    assert canaries == []
    # Every run script completed: the values were arguments, never syntax.
    for name, result in results:
        if name.endswith(".run.sh"):
            assert result.returncode == 0, f"{name}: {result.stderr}"


def test_hostile_strings_arrive_as_single_arguments(sandbox_run):
    steps, recorded, canaries, results = sandbox_run
    many = list(HOSTILE)
    assert calls(recorded, "apt-get")[-1] == ["-o", "DPkg::Lock::Timeout=900", "-o",
                                             "Dpkg::Options::=--force-confold", "install", "--yes",
                                             *plan.PREREQUISITES, *many]
    assert calls(recorded, "pip") == [["install", "--no-input", *many]]
    channels = [w for c in many for w in ("--channel", c)]
    assert calls(recorded, "mamba") == [["install", "--yes", "--prefix", tljh.USER_ENV, *channels, *many,
                                         f"python={HOSTILE[2]}"]]
    (curl,) = calls(recorded, "curl")[:1]
    assert curl[-1] == HOSTILE[5]
    bootstrap = [argv for argv in calls(recorded, "python3") if argv and argv[0].endswith("tljh-bootstrap.py")]
    assert bootstrap == [[bootstrap[0][0], "--version", HOSTILE[0]]]
    # The admins' names reach the hub's Python as data (a JSON file), never as words of a command.
    accounts = [argv for argv in calls(recorded, "python3") if argv and argv[0] == provision.HUB_ACCOUNTS]
    assert accounts == [[provision.HUB_ACCOUNTS, provision.HUB_ACCOUNTS_PLAN]]
    # The apt check asks dpkg about each hostile name, verbatim.
    asked = [argv[-1] for argv in calls(recorded, "dpkg-query")]
    assert asked == [*plan.PREREQUISITES, *many]


def test_hostile_values_stay_data_in_the_other_languages(tmp_path):
    """plan.json (JSON), config.yaml (YAML), the hub config (Python), the user data (YAML)."""
    hostile = hostile_spec()
    text = userdata.render(hostile, HOSTILE[1])
    files = written_files(text)
    document = json.loads(files[provision.PLAN]["content"])
    assert document["course"]["name"] == hostile.course.name
    assert document["spec_digest"] == HOSTILE[1]
    steps = plan.steps(hostile)
    for step in steps:  # every script in the user data reads back exactly as rendered
        assert step.run in [entry["content"] for entry in files.values()]
    settings_yaml = yaml.safe_load(files[plan.File("hub-config", tljh.CONFIG_YAML, "").staged]["content"])
    assert settings_yaml["users"]["admin"] == list(HOSTILE)
    accounts = json.loads(files[plan.File("hub-accounts", provision.HUB_ACCOUNTS_PLAN, "").staged]["content"])
    assert list(accounts["admins"]) == list(dict.fromkeys(HOSTILE))
    hub_config = tmp_path / "classimage.py"
    config_text = files[plan.File("hub-config", f"{tljh.CONFIG_D}/classimage.py", "").staged]["content"]
    # The guards it imports, from a folder of the test instead of the droplet's.
    guards = files[plan.File("hub-config", provision.HUB_GUARDS, "").staged]["content"]
    (tmp_path / "hubguards.py").write_text(guards)
    hub_config.write_text(config_text.replace(repr(provision.LIB), repr(str(tmp_path))))
    probe = ("import json, sys\nfrom traitlets.config import Config\nc = Config()\n"
             "exec(open(sys.argv[1]).read(), {'c': c})\n"
             "print(json.dumps([c.Spawner.default_url, sorted(c.CourseNames.course_admins)]))")
    result = subprocess.run([sys.executable, "-c", probe, str(hub_config)], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(tljh_source())))  # as in the hub's environment
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [links.gitpull_path(hostile.content[0], "jupyterlab"), sorted(set(HOSTILE))]


TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=60)


@settings(max_examples=150, deadline=None)
@given(st.lists(TEXT | st.sampled_from(sorted(templating._RESERVED)), min_size=1, max_size=4))
def test_sh_round_trips_through_bash(words):
    script = "printf '%s\\0' " + templating.sh(words)
    result = subprocess.run(["bash", "-c", script], capture_output=True)
    assert result.stdout.decode("utf-8", "surrogateescape").split("\0")[:-1] == words


def test_sh_never_leaves_a_reserved_word_bare():
    # Found by test_properties in CI: slug `fi` made `--course fi`, which shellcheck refuses (SC1010).
    for word in ("fi", "done", "then", "esac", "{", "[["):
        assert templating.sh(word) == f"'{word}'"
    assert templating.sh("fin") == "fin"


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | TEXT,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3)))
def test_py_round_trips_through_python(value):
    import ast
    assert ast.literal_eval(templating.py(value)) == value


@settings(max_examples=300, deadline=None)
@given(TEXT.map(lambda t: t + "\n") | TEXT)
def test_yaml_round_trips_as_a_nested_value(value):
    document = "root:\n  - key: " + templating.to_yaml(value, 4) + "\n    next: 1\n"
    assert yaml.safe_load(document) == {"root": [{"key": value, "next": 1}]}


def test_templates_refuse_unescaped_values():
    with pytest.raises(templating.UnescapedValue):
        templating._environment("sh").from_string("echo {{ value }}").render(value="$(reboot)")
    with pytest.raises(templating.UnescapedValue):
        templating._environment("sh").from_string("echo {{ value|sh|upper }}").render(value="x")
    with pytest.raises(templating.UnescapedValue):
        templating.sh(b"bytes")
    with pytest.raises(templating.UnescapedValue):
        templating.sh("nul\0byte")
