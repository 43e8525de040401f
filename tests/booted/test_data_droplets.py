"""The class's data on its own device, in test droplets running the real cloud-init and TLJH: a
one-piece droplet moves /home onto a blank device, keeping the cloud's default user (`debian`, with
the SSH key the cloud's metadata gave it) able to log in; a student gives their home to
jupyterhub-users; then a droplet from a snapshot boots on the same device, its image's groups
numbered otherwise. Both pass every readiness check (tests/firstboot.py reads their files from
inside), every group keeps its GID, the student's home is given back, the admins' files stay
theirs. On the one-piece droplet, `services.cull.users` set with the real tljh-config shows in the
status. `pytest -k owner` runs the tests of owners alone."""

from __future__ import annotations

import json
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import testdroplet
from conftest import REPO
from firstboot import BOOT_DEADLINE, assert_ready, browser, droplets, explain, render_for
from hubclient import wait_for
from classimage.pipeline import plan
from classimage.droplet import provision

pytestmark = pytest.mark.droplet
DEVICE = "/dev/disk/by-id/virtio-classdata"  # where another cloud's block device appears
STUDENT = "jupyter-student1"
# What TLJH's spawner does for a new student (tljh/user_creating_spawner.py), with TLJH's own code.
TLJH_MAKES_A_STUDENT = (f"/opt/tljh/hub/bin/python3 -c 'from tljh import user; user.ensure_user(\"{STUDENT}\"); "
                        f"user.ensure_user_group(\"{STUDENT}\", \"jupyterhub-users\")'")
STAFF_ONLY = ("install -d -g jupyterhub-admins -m 0750 /home/staff && echo 'ada,A' > /home/staff/marks.csv && "
              "chgrp jupyterhub-admins /home/staff/marks.csv && chmod 0640 /home/staff/marks.csv")


@dataclass
class Class:
    spec: dict
    key: Path  # the private half of the default user's SSH key
    one_piece: testdroplet.TestDroplet
    spec_path: Path
    cloud_init: dict
    snapshot: dict  # filled by the thread that bakes it: {"stack": [...]} or {"error": ...}
    baking: threading.Thread
    make: object
    folder: Path
    loop: str  # the device, on the host


@pytest.fixture(scope="module")
def first(image, tmp_path_factory):
    """A blank device (a loop device, as the DigitalOcean stand-in's volumes are), a one-piece
    droplet on it whose image has one group more than the snapshot's (so their GIDs differ), and,
    meanwhile, a snapshot baked from the same spec."""
    folder = tmp_path_factory.mktemp("data-droplets")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "instructor", "-f", str(folder / "key")],
                   check=True)
    backing = folder / "volume.img"
    subprocess.run(["truncate", "--size", "4G", str(backing)], check=True)
    loop = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True,
                          check=True).stdout.strip()
    source = yaml.safe_load((REPO / "examples" / "minimal.yaml").read_text())
    source["storage"] = {"type": "device", "device": DEVICE}
    try:
        with droplets(image, folder) as make:
            snapshot: dict = {}
            baking = threading.Thread(target=bake, args=(make, source, folder, snapshot))
            baking.start()
            try:
                droplet = make("one-piece")
                droplet.extra_nspawn.append(f"--bind={loop}:{DEVICE}")
                for name, line in (("group", "lab:x:1001:\n"), ("gshadow", "lab:!::\n")):
                    with open(droplet.path(f"/etc/{name}"), "a") as handle:  # a group the snapshot's image lacks
                        handle.write(line)
                user_data, spec_path = render_for(droplet, source)
                droplet.seed(user_data, "i-one-piece", public_keys=((folder / "key.pub").read_text().strip(),))
                droplet.boot()
                cloud_init = droplet.wait_for_cloud_init(BOOT_DEADLINE)
                yield Class(source, folder / "key", droplet, spec_path, cloud_init, snapshot, baking, make, folder,
                            loop)
            finally:
                baking.join()
    finally:
        subprocess.run(["losetup", "--detach", loop], capture_output=True)


def bake(make, source: dict, folder: Path, result: dict) -> None:
    try:
        builder = make("build")
        user_data, _ = render_for(builder, source, plan.BAKE)
        builder.seed(user_data, "i-build")
        builder.boot()
        status = builder.wait_for_cloud_init(BOOT_DEADLINE)
        assert status["status"] == "done", explain(builder)
        finish = builder.sh(f"{provision.RUNNER} finish-bake", timeout=600)
        assert finish.returncode == 0, finish.stdout + finish.stderr
        result["stack"] = builder.snapshot(folder / "snapshot")
    except BaseException as error:  # told to the test that needs the snapshot
        result["error"] = error


def uid_of(droplet, name: str) -> int:
    return int(droplet.sh(f"id -u {name}", check=True).stdout)


def logs_in(droplet, key: Path) -> subprocess.CompletedProcess:
    """The cloud's default user logs in over SSH with its key, from outside the droplet (sshd's
    StrictModes refuses a key whose home or .ssh is not the user's own)."""
    return subprocess.run(["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                           "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", f"debian@{droplet.ip}",
                           "id -un; cat ~/.ssh/authorized_keys"], capture_output=True, text=True, timeout=60)


def assert_default_user_owns_its_keys(droplet, key: Path) -> None:
    uid = uid_of(droplet, "debian")
    assert "/home" in droplet.sh("findmnt -n -o TARGET /home", check=True).stdout  # the device's, not the disk's
    assert droplet.owner("/home/debian") == droplet.owner("/home/debian/.ssh") == (uid, uid)
    assert droplet.owner("/home/debian/.ssh/authorized_keys") == (uid, uid)
    assert droplet.file_mode("/home/debian/.ssh") == 0o700 and droplet.file_mode("/home/debian/.ssh/authorized_keys") == 0o600
    public = Path(f"{key}.pub").read_text().strip()
    own = droplet.sh("cat /home/debian/.ssh/authorized_keys", user=uid)
    assert own.returncode == 0 and public in own.stdout, own.stderr
    ssh = logs_in(droplet, key)
    assert ssh.returncode == 0 and ssh.stdout.startswith("debian\n") and public in ssh.stdout, ssh.stderr


def test_the_default_user_owns_and_reads_its_ssh_keys_after_the_move_owner(first):
    assert first.cloud_init["status"] == "done", explain(first.one_piece)
    said = first.one_piece.read_text(provision.LOG)
    assert "classimage-class-data: moved /home onto the device, every owner" in said, said[-3000:]
    assert_default_user_owns_its_keys(first.one_piece, first.key)


def test_a_one_piece_droplet_on_a_device_passes_every_readiness_check(first):
    assert_ready(first.one_piece, first.spec_path)


def test_status_warns_when_cull_users_is_set(first):
    """Set with TLJH's own tljh-config, read by TLJH's own code: the status service (the one
    `classimage status` reads through the hub's proxy) and `classimage-provision status` warn, and
    the command the warning gives unsets it."""
    droplet = first.one_piece
    hub = browser(droplet)
    assert json.loads(hub.get(provision.SERVICE_PATH).body)["warnings"] == []
    droplet.sh("tljh-config set services.cull.users true", check=True)
    assert json.loads(hub.get(provision.SERVICE_PATH).body)["warnings"] == [provision.CULL_USERS_WARNING]
    assert f"WARNING: {provision.CULL_USERS_WARNING}" in droplet.sh(f"{provision.RUNNER} status").stdout
    fix = provision.CULL_USERS_WARNING.split("Unset it: ", 1)[1]
    droplet.sh(fix, check=True, timeout=300)
    wait_for(lambda: hub.get("/hub/api").code == 200, 120, "the hub answers after its reload")
    assert json.loads(hub.get(provision.SERVICE_PATH).body)["warnings"] == []
    assert "--cull-users" not in droplet.sh("ps -eo args").stdout


@pytest.fixture(scope="module")
def moved(first):
    """On the one-piece droplet: a student made as TLJH makes one, a folder only the admins may
    read, and the attack: the student gives their home to jupyterhub-users. Then the droplet is
    destroyed and one from the snapshot boots on the same device."""
    one = first.one_piece
    one.sh(f"{TLJH_MAKES_A_STUDENT} && {STAFF_ONLY}", check=True)
    attack = one.sh(f"runuser -u {STUDENT} -- chgrp jupyterhub-users /home/{STUDENT}")
    assert attack.returncode == 0, attack.stderr  # the kernel lets a member do it
    groups = {line.split(":")[0]: int(line.split(":")[2]) for line in one.sh(
        f"getent group jupyterhub-admins jupyterhub-users {STUDENT}", check=True).stdout.splitlines()}
    assert one.owner(f"/home/{STUDENT}")[1] == groups["jupyterhub-users"]
    one.shutdown(timeout=120)  # the class's database copy and its record of GIDs are written on the way down
    first.baking.join()
    if "error" in first.snapshot:
        raise first.snapshot["error"]
    stack = first.snapshot["stack"]
    baked = {line.split(":")[0]: int(line.split(":")[2]) for line in (stack[0] / "etc/group").read_text().splitlines()}
    droplet = first.make("from-snapshot", stack)
    droplet.extra_nspawn.append(f"--bind={first.loop}:{DEVICE}")
    user_data, spec_path = render_for(droplet, first.spec, plan.BOOT)
    droplet.seed(user_data, "i-from-snapshot", public_keys=(Path(f"{first.key}.pub").read_text().strip(),))
    droplet.boot()
    cloud_init = droplet.wait_for_cloud_init(BOOT_DEADLINE)
    assert cloud_init["status"] == "done", explain(droplet)
    return {"droplet": droplet, "spec_path": spec_path, "groups": groups, "baked": baked}


def test_a_droplet_from_a_snapshot_on_the_same_device_passes_every_readiness_check(moved):
    assert_ready(moved["droplet"], moved["spec_path"])


def test_the_groups_keep_their_gids_from_a_one_piece_to_a_snapshot_droplet_owner(moved):
    """The snapshot's TLJH numbered jupyterhub-admins and jupyterhub-users otherwise (its image has
    no `lab` group): on the device's droplets they keep the GIDs they had, so the admins' folder is
    still closed to students."""
    droplet, before, baked = moved["droplet"], moved["groups"], moved["baked"]
    assert baked["jupyterhub-users"] == before["jupyterhub-admins"]  # what would have opened the marks
    after = {line.split(":")[0]: int(line.split(":")[2]) for line in droplet.sh(
        f"getent group jupyterhub-admins jupyterhub-users {STUDENT}", check=True).stdout.splitlines()}
    assert after == before
    read = droplet.sh(f"runuser -u {STUDENT} -- cat /home/staff/marks.csv")
    assert read.returncode != 0 and "Permission denied" in read.stderr, read


def test_a_students_chgrp_of_their_home_leaves_the_class_open_and_the_home_theirs_owner(moved):
    droplet, before = moved["droplet"], moved["groups"]
    assert droplet.owner(f"/home/{STUDENT}") == (uid_of(droplet, STUDENT), before[STUDENT])
    said = droplet.read_text(provision.LOG)
    assert f"WARNING: the home of {STUDENT} was group-owned by jupyterhub-users" in said, said[-3000:]
    mine = droplet.sh(f"runuser -u {STUDENT} -- sh -c 'echo mine > ~/after.txt && cat ~/after.txt'")
    assert mine.stdout == "mine\n", mine.stderr


def test_the_default_user_still_logs_in_on_the_next_droplet_owner(moved, first):
    assert_default_user_owns_its_keys(moved["droplet"], first.key)
