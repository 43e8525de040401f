"""What the droplet tests share: droplets that run the real TLJH 2.0.0 (over the layer of stand-ins
for its downloads, tests/tljh_downloads.py), specs with this network's settings, what "ready" means
checked on the droplet itself, and a student's whole first class through the hub's proxy."""

from __future__ import annotations

import contextlib
import functools
import json
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import yaml
from packaging.requirements import Requirement

import course_repo
import testdroplet
import tljh_downloads
from conftest import cli
from hubclient import Browser, wait_for
from classimage.pipeline import admins, artifacts, plan, spec, tljh
from classimage.droplet import provision
from classimage.droplet.classdata import devices

BOOT_DEADLINE = 1200  # seconds for cloud-init to finish a first boot
ADMIN_PASSWORD = "correct-horse-battery-staple"


@functools.cache
def admin_hash() -> str:
    """What `classimage admin-password` keeps of ADMIN_PASSWORD (one hash for the whole run)."""
    return admins.hash_password(ADMIN_PASSWORD)


def layers(image: Path) -> list[Path]:
    """What a plain droplet stands on: the image, and over it the stand-ins for TLJH's downloads."""
    return [image] if tljh_downloads.REAL else [tljh_downloads.layer(image), image]


def spec_for(folder: Path, source: Path | dict, ca: course_repo.TestCA | None = None, cas: tuple[str, ...] = ()) -> Path:
    """The spec with what this network needs, set through the spec as on any campus network: the
    proxy (the harness's tinyproxy), the CAs (the one that inspects TLS here, the test CA of the
    course repository, and `cas`: PEM text, such as the CA of the ACME server's own HTTPS), and
    where TLJH's bootstrap is (the stand-in serves it on loopback)."""
    data = yaml.safe_load(source.read_text()) if isinstance(source, Path) else json.loads(json.dumps(source))
    environment = data.get("environment") or {}
    if isinstance(source, Path) and environment.get("from_repo"):  # the copy lives elsewhere
        environment["from_repo"] = str((source.parent / environment["from_repo"]).resolve())
    network = data.setdefault("network", {})
    network["proxy"] = testdroplet.shared_proxy().url
    # Each once: the course's CA may sign the ACME server's listener too.
    trusted = testdroplet.host_extra_cas() + ([ca.certificate] if ca else []) + list(cas)
    network["ca_certificates"] = list(dict.fromkeys(trusted))
    if not tljh_downloads.REAL:
        data.setdefault("tljh", {})["bootstrap_url"] = tljh_downloads.BOOTSTRAP_URL
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def render_for(droplet: testdroplet.TestDroplet, source: Path | dict, stage: str = plan.FULL,
               ca: course_repo.TestCA | None = None, cas: tuple[str, ...] = ()) -> tuple[str, Path]:
    """The user data of `stage` for the spec (with this network's settings), rendered by the CLI as
    an instructor renders it, once every admin's password is set (ADMIN_PASSWORD)."""
    path = spec_for(droplet.workdir, source, ca, cas)
    out = droplet.workdir / "rendered"
    names = spec.load_file(path).spec.hub.admins
    hashes = json.dumps({name: admin_hash() for name in names})
    result = cli("render", str(path), "--out", str(out), env={admins.ENVIRONMENT: hashes})
    assert result.returncode == 0, result.stderr.decode()
    return (out / artifacts.USER_DATA[stage]).read_text(), path


def boot(droplet, source, instance_id="i-first", ca=None) -> tuple[dict, Path]:
    user_data, spec_path = render_for(droplet, source, ca=ca)
    droplet.seed(user_data, instance_id)
    droplet.boot()
    return droplet.wait_for_cloud_init(BOOT_DEADLINE), spec_path


def explain(droplet) -> str:
    """What to read when an assertion fails: our status, our log's tail, cloud-init's output tail."""
    status = droplet.sh(f"{provision.RUNNER} status").stdout if droplet.nspawn else ""
    def tail(inside: str) -> str:
        data = droplet.read_bytes(inside)
        return "(none)" if data is None else "\n".join(data.decode(errors="replace").splitlines()[-40:])

    return (f"\n--- status\n{status}\n--- {provision.LOG}\n{tail(provision.LOG)}"
            f"\n--- installer.log\n{tail('/opt/tljh/installer.log')}"
            f"\n--- cloud-init-output.log\n{tail('/var/log/cloud-init-output.log')}")


def browser(droplet, https: tuple[str, str] | None = None) -> Browser:
    """The hub as students reach it: at the droplet's address, or with `https` (the hub's name and the
    root its certificate must chain to) by name, at the droplet's address, over HTTPS checked
    against that root alone."""
    if https is None:
        return Browser(f"http://{droplet.ip}")
    hostname, root = https
    return Browser(f"https://{hostname}", trust=root, address=droplet.ip)


def mode(droplet, inside: str) -> str:
    """The permission bits of `inside`, as the droplet sees it (the class's volume included)."""
    return oct(droplet.file_mode(inside) & 0o777)


def assert_ready(droplet, spec_path: Path, *, first_boot_clean: bool = True, volume: str | None = None,
                 https: tuple[str, str] | None = None) -> dict:
    """Everything 'ready' means, checked on the droplet itself (its files read from inside it, so
    what is mounted there counts: the class's volume) and through its proxy. `volume`: the
    DigitalOcean volume `classimage up` attached, if any (a spec's `storage.device` needs none).
    `https`: the class serves HTTPS (see `browser`)."""
    loaded = spec.load_file(spec_path)
    course = loaded.spec
    if first_boot_clean:
        result = droplet.read_json("/var/lib/cloud/data/result.json")
        assert result["v1"]["errors"] == [], result
    status = droplet.read_json(provision.STATUS)
    assert status["state"] == "ready", explain(droplet)
    assert status["spec_digest"] == loaded.digest
    assert [s["name"] for s in status["steps"]] == [s.name for s in plan.steps(course, status["stage"], volume=volume)]
    for step in status["steps"]:
        assert step["state"] == "done" and step["seconds"] >= 0 and step["started"] <= step["finished"], step
    # apt: the prerequisites and the course's packages
    packages = [*plan.PREREQUISITES, *course.environment.apt]
    installed = droplet.sh("dpkg-query --show --showformat='${Package} ${db:Status-Abbrev}\\n' " + " ".join(packages))
    states = dict(line.split(maxsplit=1) for line in installed.stdout.splitlines())
    assert {name: states.get(name, "").strip() for name in packages} == {name: "ii" for name in packages}
    # TLJH itself, at the pinned version, installed by its own bootstrap
    version = droplet.sh(f"{tljh.HUB_PYTHON} -c 'import importlib.metadata as m; "
                         "print(m.version(\"the-littlest-jupyterhub\"))'", check=True).stdout.strip()
    assert version == course.tljh.version
    # config.yaml: what the spec implies (TLJH's installer rewrote it with its own YAML writer)
    written = yaml.safe_load(droplet.read_text(tljh.CONFIG_YAML))
    assert written == tljh.config(course)
    assert tljh.problems(written, course.tljh.version) == []
    assert droplet.read_text(tljh.CLASSIMAGE_CONFIG) == tljh.jupyterhub_config(course)
    # the class's data on its device: mounted where TLJH looks for it, recorded without an error
    device = plan.data_device(course, volume)
    record = droplet.read_json(provision.DATA_RECORD) if device else None
    if record is not None and record.get("chosen") == devices.OWN_DISK:
        # `auto` with no volume attached: the data stays on the droplet's own disk, and says so
        assert device == devices.ANY_VOLUME_OR_OWN_DISK and record["error"] is None, record
        assert "own disk" in record["notes"][0], record
    elif device:
        assert record and record["error"] is None, record
        placeholder = device in (devices.ANY_VOLUME, devices.ANY_VOLUME_OR_OWN_DISK)
        assert record["device"] == (record["chosen"] if placeholder else device), record
        places = droplet.sh("for place in /srv/classimage-data /home /opt/tljh/state; do "
                            "findmnt -n -o TARGET --mountpoint $place; done").stdout
        assert places.split() == ["/srv/classimage-data", "/home", "/opt/tljh/state"], places
    # the modes TLJH sets and expects
    assert mode(droplet, tljh.CONFIG_DIR) == mode(droplet, tljh.CONFIG_D) == "0o700"
    assert mode(droplet, tljh.CLASSIMAGE_CONFIG) == mode(droplet, tljh.CONFIG_YAML) == "0o600"
    assert mode(droplet, tljh.STATE) == "0o700"
    writable = droplet.sh(f"find {tljh.USER_ENV} \\( -perm -o+w -o ! -user root \\) ! -type l | head -5").stdout
    assert writable == "", f"the user environment is not TLJH's (root's, writable by nobody else):\n{writable}"
    # conda: one install, into TLJH's user environment, with the spec's channels and packages
    conda = list(course.environment.conda.packages) + ([f"python={course.environment.python}"]
                                                       if course.environment.python else [])
    if not tljh_downloads.REAL:
        ours = [c for c in tljh_downloads.conda_calls(droplet.root) if c["command"] == "install" and not c["force_reinstall"]]
        expected = [{"channels": list(course.environment.conda.channels), "packages": conda,
                     "prefix": tljh.USER_ENV}] if conda else []
        assert [{k: c[k] for k in ("channels", "packages", "prefix")} for c in ours] == expected
    # pip: every package importable from the user environment
    if course.environment.pip:
        wanted = [Requirement(r) for r in course.environment.pip]
        names = json.dumps([r.name for r in wanted if r.marker is None or r.marker.evaluate()])
        probe = ("import importlib, importlib.metadata as m, json, sys\n"
                 f"for name in json.loads({names!r}):\n"
                 "    dist = m.distribution(name)\n"
                 "    tops = (dist.read_text('top_level.txt') or '').split() or [name.replace('-', '_')]\n"
                 "    [importlib.import_module(t) for t in tops]\n")
        droplet.path("/var/tmp/import-probe.py").write_text(probe)
        # As the course runs them: the underworld stack's lavavu needs a display, which its notebooks
        # get from Xvfb (the spec installs xvfb and xvfbwrapper for this).
        display = "xvfb-run --auto-servernum " if "xvfb" in course.environment.apt else ""
        result = droplet.sh(f"{display}{tljh.USER_BIN}/python3 /var/tmp/import-probe.py")
        assert result.returncode == 0, result.stderr
    # the network settings: the course's CAs in the system store, pip told about the proxy
    bundle = droplet.read_text("/etc/ssl/certs/ca-certificates.crt")
    assert all(pem.strip() in bundle for pem in course.network.ca_certificates)
    assert f"proxy = {course.network.proxy}" in droplet.read_text("/etc/pip.conf")
    # the hub answers through the real traefik (on port 80, or 443), from outside the droplet, and is open
    hub = browser(droplet, https)
    api = hub.get("/hub/api")
    assert api.code == 200 and "version" in json.loads(api.body), api
    assert hub.get("/hub/health").code == 200
    assert droplet.exists(provision.HUB_OPEN)
    login = hub.get("/hub/login")
    assert login.code == 200 and "being prepared" not in login.body, login
    # the provisioning status, as a health check reads it: through the hub's proxy, no log tails
    public = hub.get(provision.SERVICE_PATH)
    assert public.code == 200, public
    assert json.loads(public.body)["state"] == "ready" and "log_tail" not in public.body
    return status


class ProgressWatcher(threading.Thread):
    """Polls the droplet's port 80 during its first boot, keeping each change in what answers:
    `nothing`, `classimage's page`, `proxy, no hub yet`, `hub, being prepared (signup CODE)`,
    `hub, open`, or `other CODE`."""

    def __init__(self, droplet):
        super().__init__(daemon=True)
        self.droplet, self.stopped = droplet, threading.Event()
        self.seen: list[str] = []

    def classify(self, client: Browser) -> str:
        page = client.get("/hub/login", timeout=3)
        if page.code is None:
            return "nothing"
        if page.code == 503 and "The class is being prepared" in page.body:
            return "classimage's page"
        if page.code == 404 and "404 page not found" in page.body:
            return "proxy, no hub yet"
        if page.code == 200 and "is being prepared: the server is still installing" in page.body:
            return f"hub, being prepared (signup {client.get('/hub/signup', timeout=3).code})"
        if page.code == 200:
            return "hub, open"
        return f"other {page.code}"

    def run(self):
        client = browser(self.droplet)
        while not self.stopped.is_set():
            kind = self.classify(client)
            if not self.seen or self.seen[-1] != kind:
                self.seen.append(kind)
            self.stopped.wait(0.5)


def assert_failed(droplet, step: str, cloud_init: dict, *expected_output: str) -> dict:
    """Failure is visible: our status names the step with its log tail; cloud-init reports an error;
    nothing claims ready."""
    status = droplet.read_json(provision.STATUS)
    assert status["state"] == "failed" and status["failed_step"] == step, explain(droplet)
    failed = next(s for s in status["steps"] if s["name"] == step)
    assert failed["state"] == "failed" and failed["exit_code"] != 0
    tail = "\n".join(failed["log_tail"])
    for text in expected_output:
        assert text in tail, tail
    assert cloud_init["status"] == "error"
    errors = droplet.read_json("/var/lib/cloud/data/result.json")["v1"]["errors"]
    assert any("scripts-user" in e or "scripts_user" in e for e in errors), errors
    after = status["steps"][[s["name"] for s in status["steps"]].index(step) + 1:]
    assert all(s["state"] == "pending" for s in after)
    output = droplet.read_text("/var/log/cloud-init-output.log")
    assert "FAILED" in output and expected_output[0] in output
    return status


def listening(droplet, port: int) -> bool:
    return f":{port} " in droplet.sh("ss -Htln").stdout


# -- a student's whole first class ----------------------------------------------------------------

def student_journey(droplet, spec_path: Path, student: str = "student1",
                    https: tuple[str, str] | None = None) -> dict:
    """The instructor signs in; a student signs up and is refused until approved; the instructor
    approves; the student signs in, gets a server (SystemdSpawner, Unix user jupyter-NAME, the
    spec's limits on its unit), follows the launch link `classimage links` prints (the real
    nbgitpuller pulls the course repository; the notebook is where the link opens), runs code that
    imports a pip package from the spec; the culler runs with the spec's timeout."""
    course = spec.load_file(spec_path).spec
    password = "student-password-1"
    name = course.hub.admins[0]
    # A student races for the admin's name: the account exists already, so the signup fails, and
    # the student's password opens nothing.
    racer = browser(droplet, https)
    claim = racer.sign_up(name, password)
    assert "belongs to this course" in claim.body, claim
    racer.sign_in(name, password)
    assert racer.get("/hub/home").url.split("?")[0].endswith("/hub/login")
    assert racer.api("GET", "/hub/api/users")[0] in (401, 403)
    # The instructor signs in with the password whose hash the user data carried: no signup.
    admin = browser(droplet, https)
    admin.sign_in(name, ADMIN_PASSWORD)
    home = admin.get("/hub/home")
    assert home.code == 200 and "Authorize Users" in home.body, home

    pupil = browser(droplet, https)
    assert pupil.sign_up(student, password).code == 200
    refused = pupil.sign_in(student, password)
    assert "not been authorized" in refused.body or "authorized by an admin" in refused.body, refused
    assert pupil.get("/hub/home").url.split("?")[0].endswith("/hub/login")
    assert admin.set_approval(student).code == 200  # the admin's "Authorize" button
    signed_in = pupil.sign_in(student, password)
    assert pupil.get("/hub/home").code == 200 and "/hub/login" not in pupil.get("/hub/home").url, signed_in

    pupil.start_server(student)
    unix = f"jupyter-{student}"
    groups = droplet.sh(f"id -nG {unix}", check=True).stdout.split()
    assert "jupyterhub-users" in groups and "jupyterhub-admins" not in groups
    unit = droplet.sh(f"systemctl show {unix} -p ActiveState -p MemoryMax -p CPUQuotaPerSecUSec -p User",
                      check=True).stdout
    uid = droplet.sh(f"id -u {unix}", check=True).stdout.strip()
    assert "ActiveState=active" in unit and f"User={uid}" in unit, unit
    if course.hub.memory_limit:
        from classimage.pipeline import units
        assert f"MemoryMax={units.memory_bytes(course.hub.memory_limit)}" in unit, unit
    if course.hub.cpu_limit:
        assert f"CPUQuotaPerSecUSec={int(course.hub.cpu_limit)}s" in unit, unit

    found = json.loads(cli("links", str(spec_path), "--hub", pupil.base, "--json").stdout)
    content = found["content"][0]
    page, events = pupil.follow_launch_link(content["link"])
    assert events and events[-1]["phase"] == "finished", events
    repo = course.content[0]
    notebook = f"/home/{unix}/{repo.folder}/{repo.open}"
    assert droplet.exists(notebook), droplet.sh(f"ls -la /home/{unix}").stdout
    assert course_repo.MARKER in droplet.read_text(notebook)
    owner = droplet.sh(f"stat -c %U {notebook}", check=True).stdout.strip()
    assert owner == unix
    # where the link sends the student after the pull: the notebook, opened
    redirect = urllib.parse.parse_qs(urllib.parse.urlsplit(content["link"]).query)["urlpath"][0]
    opened = pupil.get(f"/user/{student}/{redirect}")
    assert opened.code == 200, opened
    contents = pupil.api("GET", f"/user/{student}/api/contents/{repo.folder}/{repo.open}")
    assert contents[0] == 200, contents

    if course.environment.pip:
        module = Requirement(course.environment.pip[0]).name.replace("-", "_")
        printed = pupil.execute(student, f"import {module}, os; print({module}.__name__, os.getuid())")
        assert printed.strip() == f"{module} {uid}", printed

    code, services = admin.api("GET", "/hub/api/services")
    assert code == 200, services
    culler = services["cull-idle"]
    if course.hub.idle_seconds:
        assert f"--timeout={course.hub.idle_seconds}" in culler["command"], culler
    assert "--cull-users" not in culler["command"]  # it would delete students' passwords
    assert wait_for(lambda: "jupyterhub_idle_culler" in droplet.sh("ps -eo args").stdout, 60, "the culler runs")
    assert_hash_unreadable(droplet, admin_hash(), unix)
    return {"admin": admin, "student": pupil}


def assert_hash_unreadable(droplet, hashed: str, user: str) -> None:
    """No file a student's Unix account can read holds an admin's password hash (user data and the
    hub's database are root's). Searches, as that account, every file it can read but the installed
    software (Python libraries, /usr) and devices."""
    uid = int(droplet.sh(f"id -u {user}", check=True).stdout)
    skip = " ".join(f"--exclude-dir={name}" for name in ("proc", "sys", "dev", "usr", "site-packages", "node_modules",
                                                           "share"))
    found = droplet.sh(f"grep -rlsF -D skip {skip} -- {hashed[-20:]!r} / 2>/dev/null; true", user=uid,
                       timeout=300).stdout
    assert found == "", f"{user} can read an admin's hash in: {found}"
    root_found = droplet.sh(f"grep -rlsF -- {hashed[-20:]!r} /opt/tljh/state /var/lib/cloud/instance", timeout=60).stdout
    assert root_found, "the search found nothing even as root: it would find nothing anywhere"


# -- droplets for one test ------------------------------------------------------------------------

@contextlib.contextmanager
def droplets(image: Path, folder: Path):
    """Make droplets; afterwards collect their logs and leave nothing behind: no container, veth,
    proxy or process of theirs."""
    made: list[testdroplet.TestDroplet] = []

    def make(name: str = "droplet", stack: list[Path] | None = None, inspect_only: bool = False,
             ca: course_repo.TestCA | None = None) -> testdroplet.TestDroplet:
        """A droplet on the image with the downloads' stand-ins, or on `stack` (a snapshot over
        them); with `ca`, the course repository is served inside it. `inspect_only` adds nothing to
        what it stands on (no cached packages)."""
        droplet = testdroplet.TestDroplet(folder / name, stack or layers(image), seed_downloads=not inspect_only)
        if ca is not None:
            course_repo.install(droplet.root, ca, droplet.workdir)
        made.append(droplet)
        return droplet

    def interface(droplet) -> str | None:
        """The host end of the droplet's veth, by its index: once the droplet is gone another droplet
        (the other test worker's) may take the same name, never the same index."""
        try:
            return Path(f"/sys/class/net/{droplet.veth}/ifindex").read_text().strip()
        except OSError:
            return None

    destroyed: list[tuple[testdroplet.TestDroplet, str | None]] = []
    try:
        yield make
    finally:
        for droplet in made:
            destroyed.append((droplet, interface(droplet)))
            droplet.collect(folder / f"{droplet.workdir.name}-logs")
            droplet.destroy()
    for droplet, index in destroyed:
        # The kernel takes a dead network namespace apart in the background (its veth goes with it,
        # seconds later on a busy machine): the same veth still there after a minute is a leak.
        deadline = time.monotonic() + 60
        while index is not None and interface(droplet) == index and time.monotonic() < deadline:
            time.sleep(0.5)
        assert index is None or interface(droplet) != index, f"{droplet.veth} left behind"
    leftovers = subprocess.run(["pgrep", "-f", str(folder)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], f"processes left behind: {leftovers}"
    mounts = [line for line in Path("/proc/self/mounts").read_text().splitlines() if str(folder) in line]
    assert mounts == [], f"mounts left behind: {mounts}"
