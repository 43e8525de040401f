"""Which device holds the class's data, and waiting for it (classimage/droplet/classdata/devices.py):
user data pasted by hand at DigitalOcean takes the one volume attached whatever its name (issue 19:
the control panel proposes `volume-nyc3-01`), refuses two naming them; a droplet `up` made while the
old one still has the class's volume waits for it, saying so in the record the status service
shows (make before break). In-process, on folders standing for /dev/disk/by-id."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from classimage.pipeline import plan
from classimage.droplet import provision
from classimage.droplet.classdata import devices, program, record, shared

ANY, ANY_OR_OWN = devices.ANY_VOLUME, devices.ANY_VOLUME_OR_OWN_DISK


def volumes(*names: str) -> list[str]:
    return [f"/dev/disk/by-id/scsi-0DO_Volume_{name}" for name in names]


@pytest.mark.parametrize("device, attached, chosen", [
    ("/dev/disk/by-id/virtio-classdata", [], "/dev/disk/by-id/virtio-classdata"),  # a path is itself
    ("/dev/disk/by-id/scsi-0DO_Volume_geo101-data", volumes("other"), "/dev/disk/by-id/scsi-0DO_Volume_geo101-data"),
    (ANY, volumes("volume-nyc3-01"), volumes("volume-nyc3-01")[0]),  # whatever its name
    (ANY, [], None),  # none yet: wait
    (ANY_OR_OWN, volumes("volume-nyc3-01"), volumes("volume-nyc3-01")[0]),
    (ANY_OR_OWN, [], devices.OWN_DISK),
])
def test_which_device_holds_the_class_data(device, attached, chosen):
    assert devices.choose(device, attached) == chosen


@pytest.mark.parametrize("device", [ANY, ANY_OR_OWN])
def test_two_volumes_are_refused_naming_them_and_the_fix(device):
    with pytest.raises(shared.DataError) as error:
        devices.choose(device, volumes("volume-nyc3-01", "scratch"))
    said = str(error.value)
    assert "2 DigitalOcean volumes are attached to this droplet (volume-nyc3-01, scratch)" in said
    assert "Detach the others (control panel > Volumes" in said and "classimage-provision run" in said


@pytest.fixture
def disk(tmp_path, monkeypatch):
    """/dev/disk/by-id and the record, in a temporary folder."""
    folder = tmp_path / "by-id"
    folder.mkdir()
    monkeypatch.setattr(devices, "VOLUMES", str(folder))
    monkeypatch.setattr(record, "RECORD", str(tmp_path / "record" / "data.json"))
    (folder / "wwn-0x5000c500a1b2c3d4").touch()  # another disk of the droplet's
    return folder


def recorded() -> dict:
    return json.loads(Path(record.RECORD).read_text())


def test_the_attached_volumes_are_read_from_their_stable_paths(disk):
    (disk / "scsi-0DO_Volume_volume-nyc3-01").touch()
    assert devices.attached_volumes(str(disk)) == [str(disk / "scsi-0DO_Volume_volume-nyc3-01")]
    assert devices.attached_volumes(str(disk / "missing")) == []


def test_a_droplet_waits_for_its_volume_and_says_so(disk, monkeypatch):
    """The class's volume comes later (`up` moves it once the old droplet is off): the droplet waits,
    the record says for what while it does, and not once it came."""
    monkeypatch.setattr(devices, "DEVICE_WAIT", 0)  # a volume is waited for without that limit
    volume = disk / "scsi-0DO_Volume_geo101-data"
    seen = []

    def attach_later():
        deadline = time.monotonic() + 30
        while not Path(record.RECORD).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        seen.append(recorded().get("waiting"))
        volume.touch()

    helper = threading.Thread(target=attach_later)
    helper.start()
    assert devices.wait_for(str(volume), "restart", patient=True) == str(volume)
    helper.join()
    assert seen == ["the class's volume geo101-data to be attached to this droplet"]
    assert recorded()["waiting"] is None


def test_a_missing_device_that_is_not_a_volume_fails_after_the_wait(disk, monkeypatch):
    monkeypatch.setattr(devices, "DEVICE_WAIT", 0)
    with pytest.raises(shared.DataError, match="virtio-classdata is not there: attach"):
        devices.wait_for("/dev/disk/by-id/virtio-classdata", "restart the droplet")
    assert devices.is_volume(ANY) and devices.is_volume(volumes("x")[0])
    assert not devices.is_volume("/dev/disk/by-id/virtio-classdata")


def test_pasted_user_data_with_no_volume_keeps_the_data_on_the_droplets_own_disk(disk, capsys):
    assert program.main(["prepare", ANY_OR_OWN, "--course", "geo101", "--admin", "ada"]) == 0
    assert recorded()["chosen"] == devices.OWN_DISK and "own disk" in recorded()["notes"][0]
    assert "stays on this droplet's own disk" in capsys.readouterr().out
    assert program.main(["mount", ANY_OR_OWN, "--course", "geo101"]) == 0  # at every boot: nothing to mount
    assert program.main(["tend", ANY_OR_OWN]) == 0


def test_pasted_user_data_with_two_volumes_fails_naming_them(disk):
    for name in ("volume-nyc3-01", "volume-nyc3-02"):
        (disk / f"scsi-0DO_Volume_{name}").touch()
    assert program.main(["prepare", ANY, "--course", "geo101"]) == 1
    assert "volume-nyc3-01, volume-nyc3-02" in recorded()["error"]


def test_the_choice_made_at_provisioning_is_kept_at_every_boot(disk):
    (disk / "scsi-0DO_Volume_volume-nyc3-01").touch()
    record.update_record({"chosen": str(disk / "scsi-0DO_Volume_volume-nyc3-01")})
    (disk / "scsi-0DO_Volume_scratch").touch()  # attached later, for something else
    assert devices.recalled(ANY) == str(disk / "scsi-0DO_Volume_volume-nyc3-01")
    assert devices.recalled("/dev/vdb") == "/dev/vdb"


def test_wait_now_answers_whether_the_device_is_there(disk, capsys):
    volume = disk / "scsi-0DO_Volume_volume-nyc3-01"
    assert program.main(["wait", ANY, "--now"]) == 3
    volume.touch()
    assert program.main(["wait", ANY, "--now"]) == 0
    assert capsys.readouterr().out.strip() == str(volume)
    assert program.main(["wait", ANY_OR_OWN]) == 0


def test_the_words_and_paths_are_the_ones_everything_else_uses():
    assert (devices.ANY_VOLUME, devices.ANY_VOLUME_OR_OWN_DISK, devices.OWN_DISK) == (
        provision.ANY_VOLUME, provision.ANY_VOLUME_OR_OWN_DISK, provision.OWN_DISK)
    assert devices.VOLUMES + "/" + devices.VOLUME_PREFIX == plan.VOLUME_DEVICE


@pytest.mark.parametrize("kind, volume, device", [
    ("auto", "geo101-data", plan.VOLUME_DEVICE + "geo101-data"),  # `up` knows its volume's name
    ("volume", "geo101-data", plan.VOLUME_DEVICE + "geo101-data"),
    ("auto", None, ANY_OR_OWN),  # pasted: the one attached, else the droplet's own disk
    ("volume", None, ANY),  # pasted: the one attached, waited for
    ("none", None, None),
])
def test_the_user_data_names_the_device_or_takes_the_one_attached(kind, volume, device):
    from dataclasses import replace

    from classimage.pipeline import spec
    from conftest import EXAMPLES

    course = spec.load_file(EXAMPLES[0]).spec
    course = replace(course, storage=replace(course.storage, type=kind))
    assert plan.data_device(course, volume) == device
    step = next((s for s in plan.steps(course, plan.FULL, volume=volume) if s.name == "class-data"), None)
    assert (step is None) is (device is None)
    if step is not None:  # a volume may take as long as `up` takes to move it; the step waits a day
        assert step.timeout == plan.DATA_WAIT
