"""What keeps a snapshot free of the build's identity, secrets and course files, and the build's hub
closed, proved by running what is rendered (not by a golden file, which one `--update-golden` would
rewrite):

- the bake's image cleanup, run by the real bash in a bubblewrap sandbox over a made-up built system
  (the commands that would change the machine itself, such as systemctl and apt-get, are recorders),
  must leave no SSH host key, machine-id, hub secret or database, postBuild, key or history;
- the bake's hub-lockdown step, run the same way, writes a config.yaml that TLJH 2.0.0's own
  configurer (from the vendored release) and the real NativeAuthenticator read as: no signup, no admins.
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

from conftest import EXAMPLES
from hubprocess import tljh_source
from classimage.pipeline import plan, spec, tljh, userdata
from classimage.droplet import provision

RECORDER = textwrap.dedent("""\
    #!/bin/bash
    printf '%s\\n' "$(basename "$0") $*" >> /run/record/calls
    """)
STAND_INS = ("systemctl", "apt-get", "usermod", "cloud-init", "journalctl")
COURSE = spec.load_file(EXAMPLES[0]).spec
MACHINE_ID = "0123456789abcdef0123456789abcdef\n"


def sandbox(root: Path, script: str, lib: Path) -> subprocess.CompletedProcess:
    """Run `script` with bash as root of the made-up system `root` (the host's /usr, read-only, for
    the programs), and classimage's folder `lib`; recorders stand in for STAND_INS."""
    if not shutil.which("bwrap"):
        pytest.fail("bubblewrap (bwrap) is needed: apt-get install bubblewrap (.ci/run does)")
    stand_ins, record = root.parent / "stand-ins", root.parent / "record"
    for folder in (stand_ins, record):
        folder.mkdir(exist_ok=True)
    for name in STAND_INS:
        (stand_ins / name).write_text(RECORDER)
        (stand_ins / name).chmod(0o755)
    for folder in ("etc", "tmp", "root"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    shutil.copy("/etc/ld.so.cache", root / "etc" / "ld.so.cache")
    (lib / "script.sh").write_text(script)
    links = [arg for name in ("bin", "sbin", "lib", "lib64") if Path(f"/{name}").is_symlink()
             for arg in ("--symlink", os.readlink(f"/{name}"), f"/{name}")]
    return subprocess.run(
        ["bwrap", "--bind", str(root), "/", "--ro-bind", "/usr", "/usr", *links, "--dev", "/dev", "--proc", "/proc",
         "--ro-bind", "/etc/alternatives", "/etc/alternatives",  # where /usr/bin/awk and others lead
         "--tmpfs", "/run", "--ro-bind", str(stand_ins), "/run/stand-ins", "--bind", str(record), "/run/record",
         "--tmpfs", str(Path(provision.LIB).parent), "--bind", str(lib), provision.LIB,
         "--unshare-all", "--die-with-parent", "--clearenv", "--setenv", "PATH", "/run/stand-ins:/usr/sbin:/usr/bin",
         "--setenv", "HOME", "/root", "/usr/bin/bash", f"{provision.LIB}/script.sh"],
        capture_output=True, text=True, timeout=120)


def write(root: Path, inside: str, text: str = "x\n", mode: int = 0o644) -> Path:
    path = root / inside.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


# -- the image cleanup ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cleaned(tmp_path_factory):
    """A built system as the bake leaves it, after the rendered image cleanup ran on it."""
    folder = tmp_path_factory.mktemp("cleanup")
    root, lib = folder / "root", folder / "lib"
    for inside in ("/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub", "/etc/ssh/ssh_host_rsa_key",
                   "/etc/ssh/sshd_config", "/root/.ssh/authorized_keys", "/root/.ssh/id_ed25519",
                   "/home/ubuntu/.ssh/authorized_keys", "/root/.bash_history", "/home/ubuntu/.bash_history",
                   "/root/.cache/pip/wheel", "/var/log/syslog", "/var/log/syslog.1", "/var/log/apt/history.log.2.gz",
                   "/tmp/build-scratch", "/var/tmp/more-scratch", "/opt/digitalocean/droplet-agent",
                   tljh.INSTALLER_LOG, tljh.PROXY_SECRET, tljh.PROXY_RULES, provision.HUB_OPEN,
                   *(f"{tljh.STATE}/{name}" for name in ("jupyterhub.sqlite", "jupyterhub_cookie_secret",
                                                         "traefik.toml", "acme.json", "passwords.dbm.db"))):
        write(root, inside)
    write(root, "/etc/machine-id", MACHINE_ID)
    write(root, "/var/lib/dbus/machine-id", MACHINE_ID)
    write(root, "/etc/shadow", "root:$6$salt$hash:19000:0:99999:7:::\nubuntu::19000:0:99999:7:::\n"
                               "jupyter-ta:!:19000:0:99999:7:::\n", 0o640)
    write(root, f"{tljh.USER_BIN}/conda", RECORDER, 0o755)
    for inside in (provision.POST_BUILD, f"{provision.STEPS}/07-post-build.sh", f"{provision.FILES}/post-build/post-build",
                   provision.PLAN):
        write(lib, inside.removeprefix(provision.LIB), "echo course secret\n", 0o700)
    bake = userdata.files(COURSE, "digest", plan.BAKE)
    (cleanup,) = [f.content for f in bake if f.path == provision.IMAGE_CLEANUP]
    result = sandbox(root, cleanup, lib)
    calls = (folder / "record" / "calls").read_text().splitlines()
    return root, lib, result, calls


def gone(root: Path, *inside: str) -> bool:
    return not any((root / p.lstrip("/")).exists() or (root / p.lstrip("/")).is_symlink() for p in inside)


GUARDS = {  # what the snapshot must not keep -> how to see it is gone
    "ssh-host-keys": lambda root, lib, calls: gone(root, "/etc/ssh/ssh_host_ed25519_key",
                                                   "/etc/ssh/ssh_host_ed25519_key.pub", "/etc/ssh/ssh_host_rsa_key")
    and (root / "etc/ssh/sshd_config").exists(),
    "revoked-keys-file": lambda root, lib, calls: oct((root / "etc/ssh/revoked_keys").stat().st_mode & 0o777) == "0o600",
    "machine-id": lambda root, lib, calls: (root / "etc/machine-id").read_text() == "",
    "dbus-machine-id": lambda root, lib, calls: os.readlink(root / "var/lib/dbus/machine-id") == "/etc/machine-id",
    "hub-database-and-secrets": lambda root, lib, calls: gone(
        root, *(f"{tljh.STATE}/{name}" for name in ("jupyterhub.sqlite", "jupyterhub_cookie_secret", "traefik.toml",
                                                   "acme.json", "passwords.dbm.db")), tljh.PROXY_SECRET, tljh.PROXY_RULES),
    "class-closed": lambda root, lib, calls: gone(root, provision.HUB_OPEN),
    "hub-stopped-and-disabled": lambda root, lib, calls: "systemctl disable --now jupyterhub.service traefik.service"
    in calls,
    "post-build": lambda root, lib, calls: not (lib / "post-build").exists(),
    "bake-files": lambda root, lib, calls: not any((lib / name).exists() for name in ("steps", "files", "plan.json")),
    "ssh-keys": lambda root, lib, calls: gone(root, "/root/.ssh/authorized_keys", "/root/.ssh/id_ed25519",
                                              "/home/ubuntu/.ssh/authorized_keys"),
    "passwords": lambda root, lib, calls: [c for c in calls if c.startswith("usermod")] == [
        "usermod --password * root", "usermod --password * ubuntu"],
    "shell-history": lambda root, lib, calls: gone(root, "/root/.bash_history", "/home/ubuntu/.bash_history"),
    "cloud-init-instance": lambda root, lib, calls: "cloud-init clean --logs" in calls,
    "logs": lambda root, lib, calls: gone(root, "/var/log/syslog.1", "/var/log/apt/history.log.2.gz")
    and (root / "var/log/syslog").read_text() == "" and (root / tljh.INSTALLER_LOG.lstrip("/")).read_text() == "",
    "caches-and-scratch": lambda root, lib, calls: gone(root, "/root/.cache", "/tmp/build-scratch",
                                                        "/var/tmp/more-scratch", "/opt/digitalocean"),
}


def test_the_cleanup_runs_to_its_end(cleaned):
    root, lib, result, calls = cleaned
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("guard", sorted(GUARDS))
def test_the_cleanup_leaves_nothing_of_the_build(cleaned, guard):
    root, lib, result, calls = cleaned
    assert GUARDS[guard](root, lib, calls), f"{guard}: the snapshot would keep it\n{result.stderr[-2000:]}"


# -- the build's hub lets nobody in ---------------------------------------------------------------------------

READ_AS_TLJH = textwrap.dedent("""\
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from tljh import configurer
    from traitlets.config import Config
    c = Config()
    configurer.apply_config(configurer.load_config(), c)
    from jupyterhub import orm
    from nativeauthenticator import NativeAuthenticator
    authenticator = NativeAuthenticator(config=c, db=orm.new_session_factory("sqlite://")())
    print(json.dumps({"class": c.JupyterHub.authenticator_class, "enable_signup": authenticator.enable_signup,
                      "open_signup": authenticator.open_signup, "admin_users": sorted(authenticator.admin_users)}))
    """)


def test_the_builds_hub_takes_no_signup_and_has_no_admin(tmp_path):
    """The bake's hub-lockdown step, run; its config.yaml read by TLJH 2.0.0's own configurer and the
    real NativeAuthenticator: the build droplet's hub lets nobody sign up, and has no admin."""
    (lockdown,) = [s for s in plan.steps(COURSE, plan.BAKE) if s.name == "hub-lockdown"]
    root, lib = tmp_path / "root", tmp_path / "lib"
    for file in lockdown.files:
        write(lib, file.staged.removeprefix(provision.LIB), file.content, 0o600)
    result = sandbox(root, lockdown.run, lib)
    assert result.returncode == 0, result.stderr
    written = root / tljh.CONFIG_YAML.lstrip("/")
    assert oct(written.stat().st_mode & 0o777) == "0o600"
    read = subprocess.run([sys.executable, "-c", READ_AS_TLJH, str(tljh_source())], capture_output=True, text=True,
                          env={**os.environ, "TLJH_INSTALL_PREFIX": str(root / tljh.PREFIX.lstrip("/"))})
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout) == {"class": tljh.NATIVE, "enable_signup": False, "open_signup": False,
                                       "admin_users": []}


def test_the_courses_post_build_is_roots_alone(tmp_path):
    """The post-build step, run: the course's postBuild lands 0700 (students cannot read what the course
    repository held), runs, and the bake's cleanup removes it (test_the_cleanup_leaves_nothing_of_the_build)."""
    course = spec.load_bytes(b"course: {name: X, slug: xx}\nhub: {admins: [ta]}\n"
                             b"environment: {post_build: 'echo ran > /root/post-build-ran'}\n", "spec.yaml").spec
    (step,) = [s for s in plan.steps(course, plan.BAKE) if s.name == "post-build"]
    root, lib = tmp_path / "root", tmp_path / "lib"
    write(root, f"{tljh.USER_BIN}/python3", RECORDER, 0o755)
    for file in step.files:
        write(lib, file.staged.removeprefix(provision.LIB), file.content, 0o600)
    result = sandbox(root, step.run, lib)
    assert result.returncode == 0, result.stderr
    assert (root / "root/post-build-ran").read_text() == "ran\n"
    installed = lib / provision.POST_BUILD.removeprefix(provision.LIB + "/")
    assert oct(installed.stat().st_mode & 0o777) == "0o700"
