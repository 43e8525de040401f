"""The command line as a user runs it: fresh processes, exit codes, what is written and what is not."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
import time
import venv

import pytest
import yaml

from conftest import EXAMPLES, REPO, cli

MINIMAL = REPO / "examples" / "minimal.yaml"


@pytest.mark.parametrize("verb, args", [("validate", []), ("render", ["--stdout"]), ("links", ["--hub", "https://hub.example.org"])])
def test_the_pipelines_verbs_load_nothing_of_the_cloud(verb, args):
    """The cloud's modules (and its client) load only for a cloud verb: `python -m classimage render` runs
    where pydo is not installed, and starts no slower for it."""
    program = ("import runpy, sys; sys.argv[0] = 'classimage'\n"
               "try: runpy.run_module('classimage', run_name='__main__')\n"
               "except SystemExit as end: status = end.code\n"
               "loaded = [m for m in sys.modules if m.startswith('classimage.cloud') or m.split('.')[0] == 'pydo']\n"
               "sys.stderr.write(f'loaded: {loaded}\\n'); sys.exit(status)")
    result = subprocess.run([sys.executable, "-c", program, verb, str(MINIMAL), *args], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0 and result.stderr.splitlines()[-1] == "loaded: []", result.stderr


def test_validate_exit_codes(tmp_path):
    assert cli("validate", str(MINIMAL)).returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("course: {name: X}\n")
    assert cli("validate", str(bad)).returncode == 1
    missing = cli("validate", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2
    assert missing.stderr.decode() == f"classimage: cannot read {tmp_path / 'nope.yaml'}: No such file or directory\n"
    assert cli("validate", str(tmp_path)).returncode == 2  # a directory
    assert cli("validate").returncode == 2  # no SPEC
    assert cli("frobnicate", str(MINIMAL)).returncode == 2


def test_render_stdout_prints_only_the_user_data(tmp_path):
    result = cli("render", str(MINIMAL), "--stdout", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith(b"#cloud-config\n")
    assert yaml.safe_load(result.stdout)["runcmd"]
    assert "KiB of 64.0 KiB" in result.stderr.decode()
    assert list(tmp_path.iterdir()) == []


def test_render_writes_into_build_slug_by_default_and_prints_the_size(tmp_path):
    result = cli("render", str(MINIMAL), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "build" / "data101"
    size = (out / "user-data.yaml").stat().st_size
    assert f"wrote build/data101/user-data.yaml ({size / 1024:.1f} KiB of 64.0 KiB;" in result.stderr.decode()
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == [".gitignore", "bake/user-data.yaml", "boot/user-data.yaml", "packer/classimage.pkr.hcl",
                       "packer/plugins.pkr.hcl", "user-data.yaml"]


def test_render_into_an_unwritable_place_is_a_usage_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = cli("render", str(MINIMAL), "--out", str(blocker / "out"))
    assert result.returncode == 2
    assert f"cannot write to {blocker / 'out'}" in result.stderr.decode()
    assert b"Traceback" not in result.stderr


def test_an_invalid_spec_writes_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("course: {name: X, slug: x1}\nhub: {admins: [Alice]}\n")
    result = cli("render", str(bad), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert result.stderr.decode().splitlines()[-1] == f"{bad}: 1 problem(s); nothing written"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00garbage\x00" * 100, b"- a\n- b\n", b"{{{{", b"\t\t:"],
                         ids=["empty", "binary", "list", "braces", "tabs"])
def test_bad_files_give_a_report_not_a_traceback(tmp_path, content):
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(content)
    result = cli("render", str(spec), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert stderr.startswith(f"{spec}:") and "Traceback" not in stderr
    assert not (tmp_path / "out").exists()


def test_a_ten_megabyte_file_is_refused_at_once(tmp_path):
    spec = tmp_path / "big.yaml"
    spec.write_bytes(b"course:\n" + b"  # padding\n" * (10 * 1024 * 1024 // 12))
    result = cli("validate", str(spec))
    assert result.returncode == 1
    assert "the file is more than 1 MiB; a course spec is a few kilobytes" in result.stderr.decode()


@pytest.mark.parametrize("special, kind", [("/dev/zero", "a device"), ("/dev/urandom", "a device"),
                                           ("fifo", "a FIFO"), ("folder", "a folder")])
def test_special_files_are_refused_at_once(tmp_path, special, kind):
    """Reading /dev/zero never ends and opening a FIFO waits for a writer: neither may happen."""
    if special == "fifo":
        special = tmp_path / "spec.yaml"
        os.mkfifo(special)
    elif special == "folder":
        special = tmp_path
    started = time.monotonic()
    result = cli("validate", str(special))
    assert time.monotonic() - started < 10
    assert result.returncode == 2
    assert result.stderr.decode() == f"classimage: cannot read {special}: it is {kind}, not a file (give the " \
                                     "course spec's YAML file)\n"


def test_special_files_named_as_certificates_are_problems_of_the_spec(tmp_path):
    os.mkfifo(tmp_path / "ca.pem")
    spec = tmp_path / "spec.yaml"
    spec.write_text("course: {name: X, slug: xx}\nhub: {admins: [a]}\nnetwork: {ca_certificates: [ca.pem, /dev/zero]}\n")
    result = cli("validate", str(spec))
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert f"{spec}:3 network.ca_certificates[0]: cannot read 'ca.pem': it is a FIFO, not a file" in lines[0]
    assert f"{spec}:3 network.ca_certificates[1]: cannot read '/dev/zero': it is a device, not a file" in lines[1]


def test_a_file_name_with_a_line_break_keeps_each_problem_on_one_line(tmp_path):
    spec = tmp_path / "bad\nname.yaml"
    spec.write_text("course: {name: X}\nhub: {admins: [a]}\n")
    result = cli("validate", str(spec))
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert lines[0].startswith(repr(str(spec)) + ":1 course.slug: is missing")
    assert len(lines) == 2


def test_validate_refuses_what_render_would_for_size(tmp_path):
    """validate decides everything render decides: here, user data over the droplets' 64 KiB."""
    # names gzip cannot shrink much: the user data is compressed before it is refused
    requirements = "\n".join(f"    - p{hashlib.sha256(str(i).encode()).hexdigest()[:40]}" for i in range(3000))
    spec = tmp_path / "huge.yaml"
    spec.write_text(f"course: {{name: Huge, slug: huge}}\nhub: {{admins: [alice]}}\nenvironment:\n  pip:\n{requirements}\n")
    result = cli("validate", str(spec))
    assert result.returncode == 1
    assert f"{spec}:3 environment: the user data would be" in result.stderr.decode()


def test_explain(tmp_path):
    result = cli("explain", "hub.idle_timeout")
    assert result.returncode == 0
    assert result.stdout.decode().startswith("hub.idle_timeout\n  type: string\n  default: \"1h\"\n")
    unknown = cli("explain", "hub.idle")
    assert unknown.returncode == 2 and "did you mean hub.idle_timeout" in unknown.stderr.decode()


def test_installed_package_works_from_another_directory(tmp_path):
    """A non-editable install finds its templates and schemas (they ship inside the wheel)."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(REPO)],
                   check=True, capture_output=True)
    (wheel,) = wheels.glob("classimage-*.whl")
    environment = tmp_path / "venv"
    venv.create(environment, system_site_packages=True, with_pip=True)
    python = str(environment / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "--ignore-installed", "--quiet", str(wheel)], check=True,
                   capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for example in EXAMPLES:
        result = subprocess.run([python, "-m", "classimage", "render", str(example), "--out", "out"],
                                cwd=elsewhere, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    where = subprocess.run([python, "-c", "import classimage; print(classimage.__file__)"], cwd=elsewhere,
                           capture_output=True, text=True).stdout
    assert str(environment) in where
    assert (elsewhere / "out" / "user-data.yaml").read_text() == cli("render", str(EXAMPLES[-1]), "--stdout").stdout.decode()


def test_an_api_address_without_https_is_refused_before_the_token_is_sent(tmp_path):
    """The token would cross the network in clear text: refused, saying so (not "cannot reach")."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        result = cli("status", str(MINIMAL), env={"DIGITALOCEAN_API_URL": url, "DIGITALOCEAN_TOKEN": "dop_v1_" + "0" * 64})
        with pytest.raises(socket.timeout):
            listener.accept()  # nothing connected: the token went nowhere
    finally:
        listener.close()
    assert result.returncode == 2
    assert result.stderr.decode() == (f"classimage: DIGITALOCEAN_API_URL is '{url}': classimage sends your token to "
                                      "DigitalOcean's API over HTTPS only; give an https:// address, or unset it for "
                                      "DigitalOcean's own\n")


def test_explain_names_every_keys_type():
    from classimage.pipeline import reference

    assert [key.path for key in reference.keys() if "any" in key.kind] == []


def test_the_https_warning_is_said_once_by_the_verbs_that_check_and_points_at_https(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("course: {name: X, slug: xx}\nhub: {admins: [a]}\n")
    said = {verb: cli(verb, *args, cwd=tmp_path).stderr.decode().count("plain HTTP")
            for verb, args in {"validate": [str(spec)], "render": [str(spec)], "links": [str(spec), "--hub", "http://x"],
                               "admin-password": [str(spec), "--generate"]}.items()}
    assert said == {"validate": 1, "render": 1, "links": 0, "admin-password": 0}
    line = next(line for line in cli("validate", str(spec)).stderr.decode().splitlines() if "plain HTTP" in line)
    assert line.startswith(f"warning: {spec} https: no hostname") and "add `https:`" in line
    spec.write_text("course: {name: X, slug: xx}\nhub: {admins: [a]}\nhttps: {}\n")
    line = next(line for line in cli("validate", str(spec)).stderr.decode().splitlines() if "plain HTTP" in line)
    assert line.startswith(f"warning: {spec}:3 https: no hostname")


def test_admin_password_asks_again_after_a_slip(tmp_path, monkeypatch, capsys):
    import getpass

    from classimage.pipeline import admins
    from classimage import cli as classimage_cli

    typed = iter(["short", "correct horse battery", "correct horse batteyr", "correct horse battery",
                  "correct horse battery"])
    monkeypatch.setattr(getpass, "getpass", lambda prompt: next(typed))
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    assert classimage_cli.main(["admin-password", str(MINIMAL)]) == 0
    err = capsys.readouterr().err
    assert "that will not do: it has 5 characters" in err and "the two differ; once more" in err
    stored = admins.load("data101")[0]["instructor"]
    assert admins.BCRYPT.fullmatch(stored)


def test_a_hub_from_a_repository_gets_its_admins_password_with_the_command_render_names(tmp_path):
    repo = tmp_path / "course-repo"
    repo.mkdir()
    (repo / "requirements.txt").write_text("numpy\n")
    warned = cli("render", "--repo", str(repo), "--admin", "alice", "--out", str(tmp_path / "out"))
    assert warned.returncode == 0, warned.stderr
    command = re.search(r"run `python -m classimage (admin-password [^`]+)`", warned.stderr.decode()).group(1)
    assert command == f"admin-password --repo {repo} --admin alice"
    done = cli(*shlex.split(command), "--generate")
    assert done.returncode == 0, done.stderr
    again = cli("render", "--repo", str(repo), "--admin", "alice", "--out", str(tmp_path / "out"))
    assert "no password yet" not in again.stderr.decode()
    from classimage.pipeline import admins, spec

    hashed = admins.load(spec.for_repo(repo, ["alice"]).spec.course.slug)[0]["alice"]
    assert hashed in (tmp_path / "out" / "user-data.yaml").read_text()  # the droplet makes alice's account with it


def test_build_without_packer_says_to_install_it_before_anything_else(tmp_path):
    """No packer on PATH: build's first word is where to get it (not the token it also lacks, not a
    traceback from running it), and nothing is rendered."""
    result = cli("build", str(MINIMAL), "--out", str(tmp_path / "out"), cwd=tmp_path,
                 env={"PATH": str(tmp_path / "empty"), "DIGITALOCEAN_TOKEN": ""})
    assert result.returncode == 3, result.stderr
    assert result.stderr.decode().splitlines()[-1] == (
        "classimage: packer is not installed (https://developer.hashicorp.com/packer/install; "
        "Debian: apt-get install packer)")
    assert not (tmp_path / "out").exists()


def test_validate_and_render_say_where_the_class_data_lives_and_explain_agrees(tmp_path):
    """A spec leaving storage out (type auto): validate and render each say once that pasted user
    data may keep the class on the droplet's own disk, and how to keep it; with a volume asked for,
    neither does. explain tells how the volume grows as the README does (`up`, not the control panel)."""
    spec = tmp_path / "spec.yaml"
    spec.write_text("course: {name: X, slug: xx}\nhub: {admins: [a]}\n")
    for verb in ("validate", "render"):
        said = [line for line in cli(verb, str(spec), cwd=tmp_path).stderr.decode().splitlines()
                if "the droplet's own disk" in line]
        assert len(said) == 1 and said[0].startswith(f"warning: {spec} storage.type: with the user data pasted"), said
        assert "set storage.type to volume and attach a volume named xx-data" in said[0]
    spec.write_text("course: {name: X, slug: xx}\nhub: {admins: [a]}\nstorage: {type: volume}\n")
    for verb in ("validate", "render"):
        assert "own disk" not in cli(verb, str(spec), cwd=tmp_path).stderr.decode()
    explained = " ".join(cli("explain", "storage.size_gigabytes").stdout.decode().split())
    assert "run `classimage up`: it grows the volume" in explained and "control panel" not in explained
    readme = " ".join((REPO / "README.md").read_text().split())
    assert "`up` grows the volume and its filesystem" in readme
