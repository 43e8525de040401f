"""The Packer template and `classimage build`, with the real packer binary (Debian's 1.6.6 here)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import textwrap
import unicodedata
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import EXAMPLES, cli
from classimage.pipeline import packer, templating

pytestmark = pytest.mark.skipif(not shutil.which("packer"), reason="packer is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, Path]:
    """Each example rendered as `classimage render` writes it."""
    out = {}
    for example in EXAMPLES:
        folder = tmp_path_factory.mktemp(example.stem)
        result = cli("render", str(example), "--out", str(folder))
        assert result.returncode == 0, result.stderr.decode()
        out[example.stem] = folder
    return out


@pytest.mark.parametrize("example", [e.stem for e in EXAMPLES])
def test_template_validates_and_is_formatted(rendered, example):
    folder = rendered[example] / "packer"
    env = dict(os.environ, DIGITALOCEAN_TOKEN="validation-only")
    result = subprocess.run(["packer", "validate", str(folder / packer.TEMPLATE)], capture_output=True, text=True,
                            env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    fmt = subprocess.run(["packer", "fmt", "-check", "-diff", str(folder)], capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    # The bake user data it names is the one render wrote.
    assert (folder / "../bake/user-data.yaml").resolve().is_file()


def test_template_reads_the_token_from_the_environment_only(rendered):
    text = (rendered["minimal"] / "packer" / packer.TEMPLATE).read_text()
    assert 'default   = env("DIGITALOCEAN_TOKEN")' in text and "sensitive = true" in text
    assert "api_token        = var.api_token" in text
    # Without a token, Packer itself refuses: the template never holds one.
    env = {k: v for k, v in os.environ.items() if k != "DIGITALOCEAN_TOKEN"}
    result = subprocess.run(["packer", "validate", str(rendered["minimal"] / "packer" / packer.TEMPLATE)],
                            capture_output=True, text=True, env=env)
    assert result.returncode != 0 and "api_token" in result.stdout + result.stderr


def test_the_plugin_requirement_stays_out_of_the_template(rendered):
    folder = rendered["minimal"] / "packer"
    assert "required_plugins" not in (folder / packer.TEMPLATE).read_text()
    assert "github.com/digitalocean/digitalocean" in (folder / packer.PLUGINS).read_text()
    # The plugin runs with the token: one release, never a range a new release would satisfy.
    constraints = re.findall(r'^\s*version\s*=\s*"([^"]*)"', (folder / packer.PLUGINS).read_text(), re.M)
    assert len(constraints) == 1 and re.fullmatch(r"= ?[0-9]+\.[0-9]+\.[0-9]+", constraints[0]), constraints
    assert packer.target(folder, (1, 6, 6)) == folder / packer.TEMPLATE
    assert packer.target(folder, (1, 11, 2)) == folder


@settings(max_examples=25, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40))
@example("\uf900 A\u030a ${x} %{y}")  # HCL reads strings in NFC: a compatibility ideograph, A + ring
def test_hcl_strings_round_trip_through_packer(text):
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"hcl-{os.getpid()}"
    folder.mkdir(exist_ok=True)
    (folder / "x.pkr.hcl").write_text(
        f'locals {{\n  value = {templating.hcl(text)}\n}}\nsource "null" "x" {{\n  communicator = "none"\n}}\n'
        'build {\n  sources = ["source.null.x"]\n}\n')
    result = subprocess.run(["packer", "console", str(folder / "x.pkr.hcl")], input="jsonencode(local.value)\n",
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == unicodedata.normalize("NFC", text)
    assert templating.hcl(text) == templating.hcl(json.loads(result.stdout))  # what is written is what is read


def test_build_without_a_token_stops_before_anything(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DIGITALOCEAN_TOKEN"}
    result = subprocess.run([os.sys.executable, "-m", "classimage", "build", str(EXAMPLES[0]), "--out",
                             str(tmp_path / "out")], capture_output=True, text=True, env=env,
                            cwd=Path(__file__).parents[2])
    assert result.returncode == 2
    assert "no DigitalOcean API token: set DIGITALOCEAN_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr and "api_token for auth" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_build_dry_run_validates_without_a_token(tmp_path):
    result = cli("build", str(EXAMPLES[-1]), "--out", str(tmp_path / "out"), "--dry-run", env={"DIGITALOCEAN_TOKEN": ""})
    assert result.returncode == 0, result.stderr.decode()
    assert f"packer validate: {tmp_path / 'out' / 'packer' / packer.TEMPLATE} is valid" in result.stderr.decode()


# -- the wrapper, against the real packer with builders that need no cloud -------------------------

def template(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / packer.TEMPLATE).write_text(textwrap.dedent(body))
    return folder


def test_build_streams_messages_and_reads_the_artifact(tmp_path):
    folder = template(tmp_path / "ok", """\
        source "null" "course" {
          communicator = "none"
        }
        build {
          sources = ["source.null.course"]
          provisioner "shell-local" {
            inline = ["echo baking, with a comma", "echo second line"]
          }
        }
        """)
    what = packer.validate(folder)
    assert what == folder / packer.TEMPLATE  # Packer 1.6: the template alone
    shown: list[str] = []
    result = packer.build(what, show=shown.append)
    assert result.returncode == 0, shown
    assert result.artifacts == {"null.course": "Null"}
    assert any(line.endswith("null.course: baking, with a comma") for line in shown), shown
    assert shown.index(next(l for l in shown if "baking" in l)) < shown.index(next(l for l in shown if "second line" in l))


def test_build_failure_is_reported_with_packers_error(tmp_path):
    folder = template(tmp_path / "fail", """\
        source "null" "course" {
          communicator = "none"
        }
        build {
          sources = ["source.null.course"]
          provisioner "shell-local" {
            inline = ["echo the bake failed >&2", "exit 3"]
          }
        }
        """)
    shown: list[str] = []
    result = packer.build(packer.validate(folder), show=shown.append)
    assert result.returncode != 0
    assert result.artifacts == {}
    assert any("the bake failed" in line for line in shown)
    assert result.errors and any("exit" in e.lower() or "non-zero" in e.lower() for e in result.errors), result.errors


def test_validate_failure_names_the_command(tmp_path):
    folder = template(tmp_path / "bad", 'source "null" "course" {\n  bogus = 1\n}\n'
                                        'build {\n  sources = ["source.null.course"]\n}\n')
    with pytest.raises(packer.PackerError, match="packer validate"):
        packer.validate(folder)


@pytest.mark.parametrize("line, event", [
    ("1795679182,null.x,artifact,0,id,nyc3:123456", packer.Event("null.x", "artifact", ("0", "id", "nyc3:123456"))),
    ("1795679182,,ui,message,    a%!(PACKER_COMMA) b\\nc", packer.Event("", "ui", ("message", "    a, b\nc"))),
    ("not machine readable", None),
    ("", None),
])
def test_machine_readable_lines(line, event):
    assert packer.parse(line) == event
