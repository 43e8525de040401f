"""What happens on a droplet, in order: the course as one list of Steps (data), each tagged with
the stages it belongs to. The one-piece, bake and boot user data render this one list, filtered.
`PLAN`, at the end, declares the steps top to bottom: each with its stages, the function that makes
it (above it, in the same order) and, where not every course has it, what it needs.

- full: everything on a plain droplet's first boot (for instructors who skip Packer);
- bake: the heavy, shared part, on Packer's build droplet: no admins, no secrets, a locked hub;
- boot: per droplet, on droplets made from the snapshot: settings, fresh secrets, readiness.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Any

from classimage.droplet import provision
from classimage.pipeline import network, templating, tljh
from classimage.pipeline.model import Spec
from classimage.pipeline.shipping import packaged, shipped

FULL, BAKE, BOOT = "full", "bake", "boot"
STAGES = (FULL, BAKE, BOOT)

# Packages TLJH's bootstrap needs before it runs (its documented prerequisites), curl to fetch it;
# iptables for the metadata guard, ufw for the firewall, iproute2 (ss) to see who holds port 80.
# e2fsprogs for the class's data device.
PREREQUISITES = (
    "python3",
    "python3-dev",
    "python3-venv",
    "git",
    "curl",
    "ca-certificates",
    "iptables",
    "ufw",
    "iproute2",
    "e2fsprogs",
)
# How often the hub's database is copied to the class's data device (and at every shutdown).
DATABASE_COPY_SECONDS = 300
# How a DigitalOcean volume appears on its droplet: by its name, under a stable path.
VOLUME_DEVICE = "/dev/disk/by-id/scsi-0DO_Volume_"
# What runs a student's code: the hub (their servers), cron and at (their crontabs and at jobs); none
# starts before the metadata guard, nor without it.
GUARDED_UNITS = ("jupyterhub.service", "cron.service", "atd.service")
# Port 22 is open for the instructor; TLJH's users (locked passwords, which OpenSSH with PAM still
# lets in by key) are refused by this drop-in.
SSHD_DROPIN = "/etc/ssh/sshd_config.d/classimage-no-students.conf"
# Seconds any wait for the hub or the proxy may take before the step fails with a message.
HUB_WAIT = 180
# Seconds a droplet's class-data step may wait for its DigitalOcean volume (see class_data).
DATA_WAIT = 86400


@dataclass(frozen=True)
class File:
    """A file a step installs: staged by the user data, copied into place when the step runs."""

    step: str
    path: str
    content: str | bytes  # bytes: a program zipped (the class-data program), always compressed
    mode: str = "0644"
    compressed: bool = False  # Python: classimage's own programs and the hub's config, as gzip+base64

    def __post_init__(self) -> None:
        if isinstance(self.content, bytes) and not self.compressed:
            raise ValueError(f"{self.path}: a binary file goes compressed, in the runner's zip")

    @property
    def staged(self) -> str:
        return f"{provision.FILES}/{self.step}/{PurePosixPath(self.path).name}"


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    stages: frozenset[str]
    run: str  # bash script
    check: str | None = None  # bash script exiting 0 when the work is already in place
    files: tuple[File, ...] = ()
    when: str = provision.ONCE  # or AFTER_CHANGES: run again whenever an earlier step ran
    timeout: int = 1800  # seconds

    @property
    def digest(self) -> str:
        """Changes whenever what the step does changes, so a changed step runs again."""
        parts = [self.run, self.check or ""] + [f"{f.path}\0{f.mode}\0{_text(f.content)}" for f in self.files]
        return hashlib.sha256("\0\0".join(parts).encode()).hexdigest()[:16]


def _text(content: str | bytes) -> str:
    """A file's content in a step's digest: text as it is, a zipped program by its SHA-256."""
    return content if isinstance(content, str) else hashlib.sha256(content).hexdigest()


def volume_name(slug: str) -> str:
    """The class's DigitalOcean volume, as `classimage up` first makes it (a restored one is
    SLUG-data-TIME)."""
    return f"{slug}-data"


def restored_volume_name(slug: str, when: str) -> str:
    """A volume `classimage restore` made from a backup at `when` (cloud.STAMP)."""
    return f"{volume_name(slug)}-{when}"


def data_device(spec: Spec, volume: str | None = None) -> str | None:
    """The block device that holds the class's data on the droplet, or None: the droplet's own disk.
    `volume`: the name of the DigitalOcean volume the cloud verbs attach (they know it; `render` does
    not: user data pasted by hand takes the one volume attached, whatever its name, and with `auto`
    the droplet's own disk when none is)."""
    kind = spec.storage.type
    if kind == "device":
        return spec.storage.device
    if kind in ("volume", "auto") and volume is not None:
        return VOLUME_DEVICE + volume
    if kind == "volume":
        return provision.ANY_VOLUME
    if kind == "auto":
        return provision.ANY_VOLUME_OR_OWN_DISK
    return None


def waits_for_volume(device: str) -> bool:
    """Whether the droplet may wait for this device while `classimage up` (or the instructor) moves a
    DigitalOcean volume to it: for as long as that takes, rather than failing."""
    return device in (provision.ANY_VOLUME, provision.ANY_VOLUME_OR_OWN_DISK) or device.startswith(VOLUME_DEVICE)


def bake_digest(spec: Spec) -> str:
    """Identifies what a snapshot holds: changes whenever a step that only the bake runs would
    change (a step the boot stage runs again, like the network settings, is the boot's to decide)."""
    joined = " ".join(step.digest for step in steps(spec, BAKE) if BOOT not in step.stages)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Needs:
    """What the steps are made from: the spec, the admins' password hashes, the class's data device
    (None: the droplet's own disk)."""

    spec: Spec
    admin_hashes: Mapping[str, str | None]
    device: str | None

    @property
    def packages(self) -> tuple[str, ...]:
        return PREREQUISITES + tuple(p for p in self.spec.environment.apt if p not in PREREQUISITES)

    @property
    def conda(self) -> tuple[str, ...]:
        env = self.spec.environment
        return env.conda.packages + ((f"python={env.python}",) if env.python else ())


@dataclass(frozen=True)
class Declared:
    """One step of the plan: the stages that run it, how it is made, and when a course has it."""

    stages: frozenset[str]
    make: Callable[[Needs], Step]
    only_if: Callable[[Needs], object]  # truthy when the course has the step


def _every_course(needs: Needs) -> bool:
    return True


def _declare(
    stages: set[str], make: Callable[[Needs], Step], only_if: Callable[[Needs], object] = _every_course
) -> Declared:
    return Declared(frozenset(stages), make, only_if)


def steps(
    spec: Spec,
    stage: str | None = FULL,
    admin_hashes: Mapping[str, str | None] | None = None,
    volume: str | None = None,
) -> list[Step]:
    """The steps of `stage`, in order; `stage=None`: every step of every stage (for documentation).
    `admin_hashes`: the bcrypt hash of each admin's password (an admin without one is reserved).
    `volume`: the DigitalOcean volume holding the class's data, when the cloud verbs attach one."""
    if stage is not None and stage not in STAGES:
        raise ValueError(f"no stage {stage!r}")
    device = data_device(spec, volume)
    if device is None and stage is None:  # the documentation shows the class-data step too
        device = VOLUME_DEVICE + volume_name(spec.course.slug)
    needs = Needs(spec, admin_hashes or {}, device)
    return [
        replace(declared.make(needs), stages=declared.stages)
        for declared in PLAN
        if (stage is None or stage in declared.stages) and declared.only_if(needs)
    ]


def _step(
    name: str,
    title: str,
    *,
    check: bool = False,
    files: tuple[tuple[str, str, str], ...] = (),
    programs: tuple[tuple[str, str | bytes, str], ...] = (),
    when: str = provision.ONCE,
    timeout: int = 1800,
    template: str | None = None,
    **values: object,
) -> Step:
    """A step from its template(s) (its stages come from its declaration in PLAN); `files` (path,
    content, mode) and `programs` (path, Python source: one of classimage's own modules or the hub's
    config; or a program of several modules, zipped; shipped compressed, mode) are what it installs."""
    template = template or name
    staged = tuple(File(name, path, content, mode) for path, content, mode in files) + tuple(
        File(name, path, content, mode, compressed=True) for path, content, mode in programs
    )
    return Step(
        name=name,
        title=title,
        stages=frozenset(),
        run=templating.render(f"steps/{template}.sh.j2", files=staged, **values),
        check=templating.render(f"steps/{template}.check.sh.j2", files=(), **values) if check else None,
        files=staged,
        when=when,
        timeout=timeout,
    )


def _image_check(c: Needs) -> Step:
    return _step(
        "image-check",
        "Check this droplet was made from the course's snapshot",
        runner=provision.RUNNER,
        bake_digest=bake_digest(c.spec),
    )


def _network(c: Needs) -> Step:
    return _step(
        "network",
        "Configure the proxy and trusted CAs",
        files=tuple(network.files(c.spec)),
        certificates=bool(c.spec.network.ca_certificates),
    )


def _packages(c: Needs) -> Step:
    return _step("packages", f"Install {len(c.packages)} system packages", check=True, packages=c.packages)


def _security_updates(c: Needs) -> Step:
    return _step("security-updates", "Apply security updates")


def _metadata_guard(c: Needs) -> Step:
    unit = PurePosixPath(provision.METADATA_GUARD_UNIT).name
    requires = templating.render("requires-metadata-guard.service.j2", unit=unit)
    dropins = [(f"/etc/systemd/system/{u}.d/classimage-metadata-guard.conf", requires, "0644") for u in GUARDED_UNITS]
    return _step(
        "metadata-guard",
        "Block non-root users from the metadata service",
        check=True,
        guard=provision.METADATA_GUARD,
        dropins=tuple(path for path, _, _ in dropins),
        files=(
            (provision.METADATA_GUARD, templating.static("metadata-guard.sh"), "0755"),
            (
                provision.METADATA_GUARD_UNIT,
                templating.render("classimage-metadata-guard.service.j2", guard=provision.METADATA_GUARD),
                "0644",
            ),
            *dropins,
        ),
    )


def _firewall(c: Needs) -> Step:
    return _step("firewall", "Allow only SSH, HTTP and HTTPS in", check=True)


def _ssh(c: Needs) -> Step:
    return _step(
        "ssh",
        "Keep students out of SSH",
        # As `sshd -T` prints them: one line a group.
        denied=[f"denyusers {tljh.UNIX_PREFIX}*", *(f"denygroups {group}" for group in tljh.CLASS_GROUPS)],
        files=((SSHD_DROPIN, templating.static("sshd-no-students.conf"), "0644"),),
    )


def _hub_config(c: Needs) -> Step:
    return _step(
        "hub-config",
        "Write the hub's settings",
        private=tljh.PRIVATE_DIRS,
        files=((tljh.CONFIG_YAML, tljh.config_yaml(c.spec, https=False), "0600"),),
        # The hub's Python (its settings, and the sign-in guards its settings import): compressed.
        programs=(
            (tljh.CLASSIMAGE_CONFIG, tljh.jupyterhub_config(c.spec), "0600"),
            (provision.HUB_GUARDS, shipped("hubguards"), "0644"),  # no secret: the hub's code
        ),
    )


def _hub_lockdown(c: Needs) -> Step:
    return _step(
        "hub-lockdown",
        "Lock the build droplet's hub",
        template="hub-config",
        private=tljh.PRIVATE_DIRS,
        files=((tljh.CONFIG_YAML, tljh.lockdown_yaml(c.spec.tljh.version), "0600"),),
    )


def _tljh(c: Needs) -> Step:
    return _step(
        "tljh",
        f"Install The Littlest JupyterHub {c.spec.tljh.version}",
        check=True,
        url=c.spec.tljh.bootstrap_url,
        version=c.spec.tljh.version,
        hub_python=tljh.HUB_PYTHON,
        commit=tljh.is_commit(c.spec.tljh.version),
        page_pid=provision.PROGRESS_PAGE_PID,
        args=tljh.bootstrap_args(c.spec),
    )


USER_ENV: dict[str, Any] = {"user_env": tljh.USER_ENV, "user_bin": tljh.USER_BIN}


def _conda_packages(c: Needs) -> Step:
    channels = [word for channel in c.spec.environment.conda.channels for word in ("--channel", channel)]
    return _step(
        "conda-packages",
        f"Install {len(c.conda)} conda packages",
        channels=channels,
        packages=c.conda,
        timeout=3600,
        **USER_ENV,
    )


def _pip_packages(c: Needs) -> Step:
    pip = c.spec.environment.pip
    return _step("pip-packages", f"Install {len(pip)} pip packages", requirements=pip, **USER_ENV)


def _post_build(c: Needs) -> Step:
    assert c.spec.environment.post_build is not None  # declared only_if a postBuild
    return _step(
        "post-build",
        "Run the course's postBuild",
        files=((provision.POST_BUILD, c.spec.environment.post_build, "0700"),),  # root runs it; students never read it
        script=provision.POST_BUILD,
        timeout=3600,
        **USER_ENV,
    )


def _class_data(c: Needs) -> Step:
    """The class's data on its own device, before the hub first starts (classimage/droplet/classdata/)."""
    assert c.device is not None  # declared only_if a device
    unit = PurePosixPath(provision.DATA_UNIT).name
    values: dict[str, Any] = {
        "program": provision.CLASS_DATA,
        "device": c.device,
        "slug": c.spec.course.slug,
        "admins": c.spec.hub.admins,
        "missing": PurePosixPath(provision.DATA_MISSING_SOCKET).name,
        "own_disk": provision.OWN_DISK,
    }
    requires = templating.render("hub-requires-data.service.j2", unit=unit)
    return _step(
        "class-data",
        "Put the class's data on its own device",
        **values,
        unit=unit,
        timer=PurePosixPath(provision.DATA_COPY_TIMER).name,
        # the units whose drop-ins make them require the class's data (jupyterhub.service, traefik.service)
        hub_units=tuple(
            PurePosixPath(dropin).parent.name.removesuffix(".d")
            for dropin in (tljh.HUB_UNIT_DROPIN, tljh.PROXY_UNIT_DROPIN)
        ),
        # A DigitalOcean volume may come hours later (an `up` interrupted between making the droplet and
        # moving the volume is finished by the next): the droplet waits, saying so; a day at most.
        timeout=DATA_WAIT if waits_for_volume(c.device) else 900,
        programs=((provision.CLASS_DATA, packaged("classdata"), "0755"),),  # run by systemd, one zip
        files=(
            (provision.DATA_UNIT, templating.render("classimage-data.service.j2", **values), "0644"),
            (provision.DATA_COPY_UNIT, templating.render("classimage-data-copy.service.j2", **values), "0644"),
            (
                provision.DATA_COPY_TIMER,
                templating.render("classimage-data-copy.timer.j2", every=f"{DATABASE_COPY_SECONDS}s"),
                "0644",
            ),
            (tljh.HUB_UNIT_DROPIN, requires, "0644"),
            (tljh.PROXY_UNIT_DROPIN, requires, "0644"),
            (provision.DATA_MISSING_SOCKET, templating.render("classimage-data-missing.socket.j2"), "0644"),
            (
                provision.DATA_MISSING_UNIT,
                templating.render("classimage-data-missing.service.j2", runner=provision.RUNNER),
                "0644",
            ),
        ),
    )


def _hub_secrets(c: Needs) -> Step:
    return _step("hub-secrets", "Make this droplet's own hub secrets", state=tljh.STATE, secret=tljh.PROXY_SECRET)


def _hub_accounts(c: Needs) -> Step:
    return _step(
        "hub-accounts",
        "Make the admins' accounts",
        hub_python=tljh.HUB_PYTHON,
        state=tljh.STATE,
        program=provision.HUB_ACCOUNTS,
        plan=provision.HUB_ACCOUNTS_PLAN,
        hub_health=tljh.HUB_HEALTH,
        wait=HUB_WAIT,
        programs=((provision.HUB_ACCOUNTS, shipped("hubaccounts"), "0644"),),  # run by the hub's Python
        files=((provision.HUB_ACCOUNTS_PLAN, tljh.accounts_plan(c.spec, c.admin_hashes), "0600"),),
    )


def _hub_reload(c: Needs) -> Step:
    # HTTPS once the class's data (Let's Encrypt's account and certificate) is there; with it, https-nudge's timer.
    https: tuple[tuple[str, str, str], ...] = ()
    if c.spec.https.enabled:
        nudge = templating.render("classimage-https-nudge.service.j2", runner=provision.RUNNER)
        https = (
            (tljh.CONFIG_YAML, tljh.config_yaml(c.spec), "0600"),
            (provision.HTTPS_NUDGE_UNIT, nudge, "0644"),
            (provision.HTTPS_NUDGE_TIMER, templating.render("classimage-https-nudge.timer.j2"), "0644"),
        )
    return _step(
        "hub-reload",
        "Restart the proxy and hub with the course's settings",
        when=provision.AFTER_CHANGES,
        timeout=HUB_WAIT + 60,
        hub_open=provision.HUB_OPEN,
        wait=HUB_WAIT,
        page_pid=provision.PROGRESS_PAGE_PID,
        nudge_timer=PurePosixPath(provision.HTTPS_NUDGE_TIMER).name if https else None,
        files=https,
    )


def _hub_ready(c: Needs) -> Step:
    hub_api, resolve = tljh.public_hub_api(c.spec)
    return _step(
        "hub-ready",
        "Wait for the hub to answer",
        when=provision.AFTER_CHANGES,
        timeout=HUB_WAIT + 60,
        hub_api=hub_api,
        resolve=resolve,
        wait=HUB_WAIT,
    )


# What happens on a droplet, top to bottom: each step with the stages that run it and, where not
# every course has it, what it needs. A step is made only for the stages asked for.
PLAN: tuple[Declared, ...] = (
    # First at boot: refuse a droplet not made from a classimage snapshot, warn about another spec's.
    _declare({BOOT}, _image_check),
    # First: apt, pip, conda and the TLJH bootstrap all download through this network.
    _declare({FULL, BAKE, BOOT}, _network, only_if=lambda c: network.files(c.spec)),
    _declare({FULL, BAKE}, _packages),
    _declare({BAKE}, _security_updates),
    # Also at boot: a droplet from the snapshot opens no class unless the guard is in place (and the
    # hub, cron and at never start without it: the guard fails closed).
    _declare({FULL, BAKE, BOOT}, _metadata_guard),
    _declare({FULL, BAKE}, _firewall),
    # Also at boot: a snapshot baked before this step existed gets it too.
    _declare({FULL, BAKE, BOOT}, _ssh),
    # Before TLJH, so the hub never runs with TLJH's default (anyone may sign in) settings.
    _declare({FULL, BOOT}, _hub_config),
    # The build droplet's hub lets nobody in: no signup, no admins (they come at boot).
    _declare({BAKE}, _hub_lockdown),
    _declare({FULL}, _tljh),
    _declare({BAKE}, _tljh),
    _declare({FULL, BAKE}, _conda_packages, only_if=lambda c: c.conda),
    _declare({FULL, BAKE}, _pip_packages, only_if=lambda c: c.spec.environment.pip),
    _declare({FULL, BAKE}, _post_build, only_if=lambda c: c.spec.environment.post_build),
    # After the software, so that a droplet made while another still has the class's volume (make
    # before break) is ready but for its data; before anything is written into the hub's state.
    _declare({FULL, BOOT}, _class_data, only_if=lambda c: c.device is not None),
    _declare({BOOT}, _hub_secrets),
    # After the software, before the class opens: nobody can claim an admin's name meanwhile.
    _declare({FULL, BOOT}, _hub_accounts),
    _declare({FULL, BOOT}, _hub_reload),
    _declare({FULL, BOOT}, _hub_ready),
)
