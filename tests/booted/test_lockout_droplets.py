"""What keeps the class's own people out of root and out of SSH, in test droplets running the real
cloud-init, TLJH 2.0.0, OpenSSH, sudo and the class's data on a device (issue 16's promise: no
student becomes admin or root).

- ssh: a student writes their own key into ~/.ssh/authorized_keys from a notebook and logs in over
  SSH (TLJH's users have locked passwords, which OpenSSH with PAM still lets in by key; the session
  would run outside the hub's unit: no limits, no culler): refused, as is the TA; the cloud's default
  user and root still log in. With the drop-in removed, the same student gets in (the attack is real).
- demoted_admin: a TA listed in hub.admins, with sudo from their server; the instructor removes the
  TA from hub.admins and deploys again, on the same droplet (re-provisioned by cloud-init, as a new
  instance) and on a new droplet on the same device: the TA's sudo fails (from their server and from
  their Unix user) and the hub's admin page refuses them."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

import testdroplet
from firstboot import ADMIN_PASSWORD, BOOT_DEADLINE, assert_ready, browser, droplets, explain, listening, render_for
from hubclient import Browser, signed_in, wait_for
from classimage.pipeline import plan, tljh

pytestmark = pytest.mark.droplet
DEVICE = "/dev/disk/by-id/virtio-classdata"
ADMINS = ["instructor", "ta"]
COURSE = {"course": {"name": "Lockout 101", "slug": "lock101"}, "hub": {"admins": ADMINS},
          "storage": {"type": "device", "device": DEVICE}}
STUDENT_PASSWORD = "student-password-1"


@dataclass
class Class:
    droplet: testdroplet.TestDroplet
    spec_path: Path
    key: Path  # the private half of the key the cloud gives its default user (and the attackers use)
    make: object
    loop: str


def provision(droplet, source: dict, instance: str, key: Path) -> Path:
    """Seed `source`'s one-piece user data as instance `instance` and boot (again): cloud-init runs
    it as a new instance, as on a new droplet or a droplet re-provisioned."""
    user_data, spec_path = render_for(droplet, source)
    droplet.seed(user_data, instance, public_keys=(Path(f"{key}.pub").read_text().strip(),))
    if droplet.nspawn is not None:
        droplet.shutdown(timeout=120)
    droplet.boot()
    status = droplet.wait_for_cloud_init(BOOT_DEADLINE)
    assert status["status"] == "done", explain(droplet)
    assert_ready(droplet, spec_path, first_boot_clean=False)
    return spec_path


@pytest.fixture(scope="module")
def course_class(image, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lockout")
    key = folder / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(key)], check=True)
    backing = folder / "volume.img"
    subprocess.run(["truncate", "--size", "2G", str(backing)], check=True)
    loop = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True,
                          check=True).stdout.strip()
    try:
        with droplets(image, folder) as make:
            droplet = make("first")
            droplet.extra_nspawn.append(f"--bind={loop}:{DEVICE}")
            spec_path = provision(droplet, COURSE, "i-first", key)
            yield Class(droplet, spec_path, key, make, loop)
    finally:
        subprocess.run(["losetup", "--detach", loop], capture_output=True)


def ssh(droplet, key: Path, user: str) -> subprocess.CompletedProcess:
    """`user` logs in over SSH with `key`, from outside the droplet, and says who it is."""
    return subprocess.run(["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                           "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", f"{user}@{droplet.ip}",
                           "id -un"], capture_output=True, text=True, timeout=60)


def with_server(droplet, name: str, password: str) -> Browser:
    """`name` signed in, their server started (TLJH makes the Unix user jupyter-NAME)."""
    user = signed_in(f"http://{droplet.ip}", name, password)
    assert user.is_signed_in(), name
    user.start_server(name)
    return user


def plant_key(user: Browser, name: str, key: Path) -> None:
    """What a student can do from a notebook: their own key into ~/.ssh/authorized_keys."""
    public = Path(f"{key}.pub").read_text().strip()
    printed = user.execute(name, "import os, pathlib\n"
                                 "folder = pathlib.Path.home() / '.ssh'\n"
                                 "folder.mkdir(mode=0o700, exist_ok=True)\n"
                                 f"(folder / 'authorized_keys').write_text({public!r} + '\\n')\n"
                                 "(folder / 'authorized_keys').chmod(0o600)\n"
                                 "print(os.getuid(), sorted(p.name for p in folder.iterdir()))")
    assert "['authorized_keys']" in printed, printed


def test_ssh_a_student_with_a_key_in_their_home_is_refused(course_class):
    droplet, key = course_class.droplet, course_class.key
    instructor = signed_in(f"http://{droplet.ip}", "instructor", ADMIN_PASSWORD)
    assert browser(droplet).sign_up("student1", STUDENT_PASSWORD).code == 200
    assert instructor.set_approval("student1").code == 200
    student = with_server(droplet, "student1", STUDENT_PASSWORD)
    plant_key(student, "student1", key)
    ta = with_server(droplet, "ta", ADMIN_PASSWORD)
    plant_key(ta, "ta", key)
    for user in ("jupyter-student1", "jupyter-ta"):
        refused = ssh(droplet, key, user)
        assert refused.returncode == 255 and "Permission denied" in refused.stderr, refused
        assert refused.stdout == ""
    said = droplet.sh("journalctl --no-pager -u ssh.service").stdout
    assert "User jupyter-student1 from" in said and "not allowed because listed in DenyUsers" in said, said[-2000:]
    # The instructor's ways in: the cloud's default user, and root.
    allowed = ssh(droplet, key, "debian")
    assert allowed.returncode == 0 and allowed.stdout == "debian\n", allowed.stderr
    droplet.sh(f"install -d -m 0700 /root/.ssh && cp /home/debian/.ssh/authorized_keys /root/.ssh/", check=True)
    root = ssh(droplet, key, "root")
    assert root.returncode == 0 and root.stdout == "root\n", root.stderr


def test_ssh_without_the_drop_in_the_student_gets_in(course_class):
    """The attack is real: the same student, key and sshd, without classimage's drop-in, log in
    (then the step puts it back, and the door closes again)."""
    droplet, key = course_class.droplet, course_class.key
    dropin = plan.SSHD_DROPIN
    droplet.sh(f"mv {dropin} /root/dropin.conf", check=True)
    reload_sshd(droplet)
    try:
        opened = ssh(droplet, key, "jupyter-student1")
        assert opened.returncode == 0 and opened.stdout == "jupyter-student1\n", opened.stderr
    finally:
        droplet.sh(f"mv /root/dropin.conf {dropin}", check=True)
        reload_sshd(droplet)
    assert ssh(droplet, key, "jupyter-student1").returncode == 255


def reload_sshd(droplet) -> None:
    """sshd re-executes itself on a reload, and refuses connections until it listens again."""
    droplet.sh("systemctl reload ssh.service", check=True)
    wait_for(lambda: listening(droplet, 22), 30, "sshd listens again after its reload")


def test_ssh_a_server_whose_sshd_reads_no_drop_ins_fails_the_step(course_class):
    """Without sshd_config's Include line, the drop-in would be a file nobody reads: the step fails,
    saying what to add, and runs clean once it is back."""
    droplet = course_class.droplet
    step = droplet.sh("ls /usr/local/lib/classimage/steps/*-ssh.sh", check=True).stdout.strip()
    droplet.sh("sed -i.classimage-test 's|^Include /etc/ssh/sshd_config.d|#&|' /etc/ssh/sshd_config", check=True)
    try:
        failed = droplet.sh(f"bash {step}")
        assert failed.returncode == 1, failed
        assert "sshd -T lacks 'denyusers jupyter-*': add 'Include /etc/ssh/sshd_config.d/*.conf'" in failed.stderr
    finally:
        droplet.sh("mv /etc/ssh/sshd_config.classimage-test /etc/ssh/sshd_config", check=True)
    assert droplet.sh(f"bash {step}").returncode == 0


# -- demoted_admin ----------------------------------------------------------------------------------

SUDO = "import subprocess; print(subprocess.run(['sudo', '-n', 'id', '-u'], capture_output=True, text=True))"


def ta_is_root(droplet, ta: Browser | None = None) -> dict[str, bool]:
    """Whether the TA becomes root through sudo: from their server (a notebook's kernel), and as
    their Unix user outside it (a cron job or anything else running as jupyter-ta)."""
    found = {}
    if ta is not None:
        found["server"] = "stdout='0\\n'" in ta.execute("ta", SUDO)
    outside = droplet.sh("runuser -u jupyter-ta -- sudo -n id -u")
    found["unix user"] = outside.returncode == 0 and outside.stdout == "0\n"
    found["in jupyterhub-admins"] = "jupyterhub-admins" in droplet.sh("id -nG jupyter-ta", check=True).stdout.split()
    return found


def hub_says_admin(droplet) -> bool:
    ta = signed_in(f"http://{droplet.ip}", "ta", ADMIN_PASSWORD)
    code, me = ta.api("GET", "/hub/api/user")
    assert code == 200 and me["name"] == "ta", (code, me)
    page = ta.get("/hub/admin")
    assert me["admin"] == (page.code == 200), (me, page)
    return me["admin"]


DEMOTED = {**COURSE, "hub": {"admins": ["instructor"]}}


def test_demoted_admin_on_the_same_droplet_re_provisioned_loses_root(course_class):
    droplet = course_class.droplet
    ta = with_server(droplet, "ta", ADMIN_PASSWORD)
    assert ta_is_root(droplet, ta) == {"server": True, "unix user": True, "in jupyterhub-admins": True}
    assert hub_says_admin(droplet)
    course_class.spec_path = provision(droplet, DEMOTED, "i-first-again", course_class.key)
    assert not hub_says_admin(droplet)
    assert ta_is_root(droplet) == {"unix user": False, "in jupyterhub-admins": False}
    ta = with_server(droplet, "ta", ADMIN_PASSWORD)
    assert ta_is_root(droplet, ta) == {"server": False, "unix user": False, "in jupyterhub-admins": False}
    ta.get("/hub/home")
    assert ta.api("GET", "/hub/api/users")[0] == 403


def test_demoted_admin_on_a_new_droplet_on_the_same_device_loses_root(course_class):
    """The TA made an admin again (the admin panel refuses it now; an older hub took it, or a hand
    edit of the database: JupyterHub's flag, TLJH's group and sudo at the next server start), the
    droplet destroyed, and a new one made from the spec that does not list the TA, on the same
    device: the database and homes come with it."""
    droplet = course_class.droplet
    instructor = signed_in(f"http://{droplet.ip}", "instructor", ADMIN_PASSWORD)
    instructor.get("/hub/admin")
    assert instructor.api("PATCH", "/hub/api/users/ta", {"admin": True})[0] == 403
    instructor.api("DELETE", "/hub/api/users/ta/server")
    wait_for(lambda: not droplet.sh("systemctl is-active jupyter-ta").stdout.startswith("active"), 60,
             "the TA's server stops")
    droplet.sh("systemctl stop jupyterhub.service", check=True)
    # Inside the droplet: the database is on the class's device, mounted there, not in the rootfs.
    droplet.path("/var/tmp/make-ta-admin.py").write_text(
        "import sqlite3\n"
        f"with sqlite3.connect({tljh.DATABASE.removeprefix('sqlite:///')!r}) as db:\n"
        "    assert db.execute(\"UPDATE users SET admin = 1 WHERE name = 'ta'\").rowcount == 1\n")
    droplet.sh(f"{tljh.HUB_PYTHON} /var/tmp/make-ta-admin.py", check=True)
    droplet.sh("systemctl start jupyterhub.service", check=True)
    wait_for(lambda: browser(droplet).get("/hub/api").code == 200, 120, "the hub answers after its restart")
    ta = with_server(droplet, "ta", ADMIN_PASSWORD)
    assert ta_is_root(droplet, ta) == {"server": True, "unix user": True, "in jupyterhub-admins": True}
    droplet.shutdown(timeout=120)
    new = course_class.make("second")
    new.extra_nspawn.append(f"--bind={course_class.loop}:{DEVICE}")
    provision(new, DEMOTED, "i-second", course_class.key)
    assert not hub_says_admin(new)
    assert ta_is_root(new) == {"unix user": False, "in jupyterhub-admins": False}
    ta = with_server(new, "ta", ADMIN_PASSWORD)
    assert ta_is_root(new, ta) == {"server": False, "unix user": False, "in jupyterhub-admins": False}
    said = new.read_text("/var/log/classimage.log")
    assert "ta: no longer an admin (not in hub.admins)" in said, said[-3000:]
