"""The real JupyterHub on loopback, configured as on a droplet, in seconds: TLJH 2.0.0's own
jupyterhub_config.py (from the vendored release archive) reads the config.yaml classimage renders and
then loads the jupyterhub_config.d file classimage renders, byte for byte as the user data writes
them; the admins' accounts are made by classimage's hubaccounts.py from the plan the user data
carries. Everything runs in a bubblewrap sandbox whose /opt/tljh, /var/lib/classimage,
/usr/local/lib/classimage (classimage's hubguards.py, which the config imports) and /home are folders
of the test, so the droplet's absolute paths hold: the rest of the machine but the
temporary folder is read-only.

Stand-ins, in a last jupyterhub_config.d file (STANDINS), for what a test on loopback cannot use:
the proxy (TLJH's traefik: the tests talk to the hub's own port, which serves every /hub/ page), the
spawner (TLJH's makes Unix users: a stand-in refuses to start servers), and the managed services
(the idle culler and classimage's status service are programs of a droplet). The test droplets
(tests/booted/test_hub_attacks_droplet.py) run the same attacks through the real traefik and TLJH.

ChartHub is a cluster's hub the same way: Zero to JupyterHub's own jupyterhub_config.py (chart 4.4.0,
from the vendored release) runs on the values classimage renders, laid out as the hub pod mounts
them, with the same stand-ins (as one more hub.extraConfig entry, after classimage's), so the tests
attack both hubs with the same requests (tests/droplet/test_hub_attacks.py)."""

from __future__ import annotations

import atexit
import contextlib
import copy
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import yaml

import tljh_downloads
from hubclient import Browser
from classimage.pipeline import plan, shipping, spec, tljh, z2jh
from classimage.droplet import hubaccounts, provision

HERE = Path(__file__).resolve().parent
STANDINS = "zz-classimage-test-standins.py"
STANDINS_CONFIG = """
# classimage tests: STAND-INS for what a hub on loopback cannot use (tests/hubprocess.py).
from hubprocess_standins import NoProxy, NoSpawner
c.JupyterHub.proxy_class = NoProxy
c.JupyterHub.spawner_class = NoSpawner
c.JupyterHub.redirect_to_server = False  # after sign-in, the hub's home: no server is started
c.JupyterHub.hub_bind_url = {hub!r}
c.JupyterHub.bind_url = {hub!r}
c.JupyterHub.services = []  # the culler and the status service: programs of a droplet
"""


@functools.cache
def tljh_source() -> Path:
    """The `tljh` package of the release archive, unpacked once per test process."""
    folder = Path(tempfile.mkdtemp(prefix="classimage-tljh-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    with tarfile.open(tljh_downloads.archive()) as tar:
        members = [m for m in tar.getmembers() if m.name.split("/", 1)[-1].startswith("tljh/")]
        for member in members:
            member.name = member.name.split("/", 1)[1]
        tar.extractall(folder, members=members, filter="data")
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Hub:
    """What both hubs share: a process in a sandbox, its log, the API it answers."""

    state: Path  # the folder of the hub's database, its record of the admins and FirstUse's passwords

    def __init__(self, folder: Path, course: spec.Spec, hashes: dict[str, str | None]):
        self.folder, self.course, self.hashes = folder, course, hashes
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log = folder / "hub.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 90) -> None:
        """Start the hub and wait for its API."""
        assert self.process is None
        with open(self.log, "ab") as log:  # its own process group: stop() ends the sandbox and the hub in it
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        try:
            self._wait_for_api(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_for_api(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        probe = Browser(self.url)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HubExited(f"the hub exited ({self.process.returncode}):\n{self.tail()}")
            if probe.get("/hub/api", timeout=2).code == 200:
                return
            time.sleep(0.2)
        raise AssertionError(f"the hub did not answer within {timeout:.0f}s:\n{self.tail()}")

    def stop(self) -> None:
        if self.process is None:
            return
        group = self.process.pid  # the group start() made, led by the sandbox
        for sent in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, sent)
            try:
                self.process.wait(20)
                break
            except subprocess.TimeoutExpired:
                continue
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def browser(self) -> Browser:
        return Browser(self.url)

    @property
    def database(self) -> Path:
        return self.state / Path(tljh.DATABASE).name

    @property
    def passwords(self) -> Path:
        return self.state / Path(tljh.FIRST_USE_PASSWORDS).name

    def record(self) -> dict:
        path = self.state / Path(tljh.ACCOUNTS_RECORD).name
        return json.loads(path.read_text()) if path.exists() else {}


class HubExited(AssertionError):
    pass


class LoopbackHub(Hub):
    """A droplet's hub configuration under `folder`: render it, make the admins' accounts, open the
    class (or not), start and stop the hub."""

    target = "droplet"

    def __init__(self, folder: Path, course: spec.Spec, hashes: dict[str, str | None]):
        super().__init__(folder, course, hashes)
        self.opt, self.lib, self.home = folder / "opt-tljh", folder / "var-lib-classimage", folder / "home"
        self.programs = folder / "usr-local-lib-classimage"
        for made in (self.opt / "config" / "jupyterhub_config.d", self.opt / "state", self.lib, self.home,
                     self.programs):
            made.mkdir(parents=True, exist_ok=True)
        self.state = self.inside(tljh.STATE)
        self.write_config()

    def inside(self, path: str) -> Path:
        """Where the droplet's `path` is in this folder."""
        for prefix, folder in (("/opt/tljh/", self.opt), (provision.STATE + "/", self.lib), ("/home/", self.home),
                               (provision.LIB + "/", self.programs)):
            if path.startswith(prefix):
                return folder / path[len(prefix):]
        raise ValueError(path)

    def write_config(self, course: spec.Spec | None = None) -> None:
        """config.yaml and classimage's jupyterhub_config.d file, as the hub-config step writes them."""
        self.course = course or self.course
        self.inside(tljh.CONFIG_YAML).write_text(tljh.config_yaml(self.course))
        self.inside(tljh.CLASSIMAGE_CONFIG).write_text(tljh.jupyterhub_config(self.course))
        self.inside(provision.HUB_GUARDS).write_text(shipping.shipped("hubguards"))
        standins = self.inside(tljh.CONFIG_D) / STANDINS
        standins.write_text(STANDINS_CONFIG.format(hub=self.url))

    def sandbox(self, *argv: str, **kwargs) -> list[str]:
        temporary = tempfile.gettempdir()  # the tests' folders, and the hub's scratch space
        return ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--bind", temporary, temporary,
                "--tmpfs", "/opt", "--bind", str(self.opt), "/opt/tljh",
                "--tmpfs", "/var/lib", "--bind", str(self.lib), provision.STATE,
                "--bind", str(self.home), "/home", "--tmpfs", "/usr/local/lib", "--bind", str(self.programs),
                provision.LIB,
                "--setenv", "PYTHONPATH", os.pathsep.join([str(tljh_source()), str(HERE)]),
                "--setenv", "TLJH_INSTALL_PREFIX", "/opt/tljh",
                "--unshare-pid", "--die-with-parent", "--chdir", tljh.STATE, "--", *argv]

    def make_accounts(self, hashes: dict[str, str | None] | None = None) -> subprocess.CompletedProcess:
        """The hub-accounts step: classimage's program with the plan the user data carries."""
        self.hashes = hashes if hashes is not None else self.hashes
        plan_file = self.folder / "hub-accounts.json"
        plan_file.write_text(tljh.accounts_plan(self.course, self.hashes))
        return subprocess.run(self.sandbox(sys.executable, hubaccounts.__file__, str(plan_file)), capture_output=True,
                              text=True, timeout=120)

    def open_class(self) -> None:
        self.inside(provision.HUB_OPEN).touch()

    def command(self) -> list[str]:
        """The hub as TLJH's unit starts it."""
        return self.sandbox(sys.executable, "-m", "jupyterhub", "-f", str(tljh_source() / "tljh" /
                                                                         "jupyterhub_config.py"), "--upgrade-db")


# -- a cluster's hub ----------------------------------------------------------------------------------

VENDOR = Path(os.environ.get("CLASSIMAGE_VENDOR", HERE.parent.parent / "shared" / "vendor"))
CHART_ARCHIVE = "zero-to-jupyterhub-k8s-4.4.0.tar.gz"
ETC = "/usr/local/etc/jupyterhub"  # where the hub pod mounts the chart's config, values and secrets
NAMES = ("hub", "proxy-api", "proxy-public", "singleuser", "image-pull-secret", "user-scheduler", "priority")
SECRETS = ("hub.config.JupyterHub.cookie_secret", "hub.config.CryptKeeper.keys",
           "hub.config.ConfigurableHTTPProxy.auth_token")
CHART_STANDINS = STANDINS_CONFIG + "c.JupyterHub.load_roles = []  # the culler's role names its service\n"


def unpack(archive: str, into: Path) -> Path:
    path = VENDOR / archive
    if not path.is_file():
        raise FileNotFoundError(f"{archive} is not at {path}: set CLASSIMAGE_VENDOR to the folder holding it "
                                "(shared/vendor beside this checkout)")
    with tarfile.open(path) as tar:
        tar.extractall(into, filter="data")
    (top,) = into.iterdir()
    return top


@functools.cache
def chart_source() -> Path:
    """The chart's folder (values.yaml, values.schema.yaml, files/hub/), unpacked once per test process."""
    folder = Path(tempfile.mkdtemp(prefix="classimage-chart-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return unpack(CHART_ARCHIVE, folder) / "jupyterhub"


def coalesce(defaults, given):
    """Helm's merge of a chart's values.yaml with the user's values: mappings merge key by key, the
    user's value wins, and a null removes the default (helm's `coalesceValues`)."""
    if not (isinstance(defaults, dict) and isinstance(given, dict)):
        return copy.deepcopy(given)
    merged = copy.deepcopy(defaults)
    for key, value in given.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = coalesce(defaults.get(key), value)
    return merged


def helm_values(chart: Path, text: str, release: str = "underworld") -> dict:
    """What the chart's hub Secret holds as values.yaml: the merged values and Chart/Release."""
    values = coalesce(yaml.safe_load((chart / "values.yaml").read_text()), yaml.safe_load(text))
    values["Chart"] = {"Name": "jupyterhub", "Version": z2jh.CHART, "AppVersion": "5.5.0"}
    values["Release"] = {"Name": release, "Namespace": release, "Service": "Helm"}
    return values


def hub_pod(chart: Path, values_text: str, root: Path) -> tuple[Path, Path]:
    """The hub pod's /usr/local/etc/jupyterhub (the chart's ConfigMap and Secret, the values'
    extraFiles) and its /srv/jupyterhub volume, as folders to bind there; a `helm upgrade` of the
    values when they are there already (the volume and the secrets stay)."""
    etc, state = root / "etc", root / "state"
    for folder in (etc / "config", etc / "secret", state):
        folder.mkdir(parents=True, exist_ok=True)
    for name in ("jupyterhub_config.py", "z2jh.py"):
        shutil.copy(chart / "files" / "hub" / name, etc / name)
    for name in NAMES:  # the chart's name templates, with its default fullnameOverride ""
        (etc / "config" / name).write_text(name)
    values = helm_values(chart, values_text)
    (etc / "secret" / "values.yaml").write_text(yaml.safe_dump(values))
    for key in SECRETS:
        if not (etc / "secret" / key).exists():
            (etc / "secret" / key).write_text(os.urandom(32).hex())
    for name, extra in values["hub"]["extraFiles"].items():
        target = Path(extra["mountPath"])
        assert target.is_relative_to(ETC), name  # the test binds only the chart's folder
        (etc / target.relative_to(ETC)).parent.mkdir(parents=True, exist_ok=True)
        (etc / target.relative_to(ETC)).write_text(extra["stringData"])
    return etc, state


def pod_sandbox(etc: Path, state: Path, argv: list[str], network: bool = False) -> list[str]:
    """`argv` in a sandbox with the hub pod's folders and environment, in a network of its own
    (loopback only), or with `network`, this machine's (a hub the tests reach on loopback)."""
    if not shutil.which("bwrap"):
        raise AssertionError("bubblewrap (bwrap) is needed: apt-get install bubblewrap (.ci/run does)")
    hosts = etc.parent / "hosts"
    hosts.write_text("127.0.0.1 localhost hub proxy-api proxy-public\n")
    # KubeSpawner loads a Kubernetes client's configuration when it is made (in a pod: the service
    # account's); no cluster runs here, so an address nobody answers.
    kubeconfig = etc.parent / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "none",
        "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "none", "user": {"token": "none"}}],
        "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}]}))
    token = (etc / "secret" / "hub.config.ConfigurableHTTPProxy.auth_token").read_text()
    return ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
            "--tmpfs", "/usr/local/etc", "--bind", str(etc), ETC, "--tmpfs", "/srv", "--bind", str(state),
            "/srv/jupyterhub", "--ro-bind", str(hosts), "/etc/hosts", "--chdir", "/srv/jupyterhub",
            *([] if network else ["--unshare-net"]), "--unshare-pid", "--die-with-parent", "--clearenv",
            "--setenv", "PATH", f"{Path(sys.executable).parent}:/usr/bin:/bin", "--setenv", "HOME", "/tmp",
            "--setenv", "POD_NAMESPACE", "underworld", "--setenv", "HELM_RELEASE_NAME", "underworld",
            "--setenv", "PROXY_API_SERVICE_PORT", "8001", "--setenv", "HUB_SERVICE_PORT", "8081",
            "--setenv", "CONFIGPROXY_AUTH_TOKEN", token, "--setenv", "PYTHONUNBUFFERED", "1",
            "--setenv", "PYTHONPATH", str(HERE),
            "--ro-bind", str(kubeconfig), "/tmp/kubeconfig", "--setenv", "KUBECONFIG", "/tmp/kubeconfig", *argv]


class ChartHub(Hub):
    """A cluster's hub under `folder`: classimage's values (render --target z2jh) for the course,
    and the chart's own config run on them. The admins' accounts are made when the hub starts
    (hub.extraConfig runs hubaccounts.py): make_accounts() is a `helm upgrade` of the values."""

    target = "z2jh"

    def __init__(self, folder: Path, course: spec.Spec, hashes: dict[str, str | None]):
        super().__init__(folder, course, hashes)
        self.state = folder / "pod" / "state"
        self.write_config()

    def write_config(self, course: spec.Spec | None = None) -> None:
        self.course = course or self.course
        values = z2jh.values(self.course, self.hashes)
        values["hub"]["extraConfig"]["zz-classimage-test-standins"] = CHART_STANDINS.format(hub=self.url)
        self.etc, self.state = hub_pod(chart_source(), yaml.safe_dump(values), self.folder / "pod")

    def make_accounts(self, hashes: dict[str, str | None] | None = None) -> subprocess.CompletedProcess:
        """The values with these hashes, for the next start (which makes the accounts)."""
        self.hashes = hashes if hashes is not None else self.hashes
        self.write_config()
        return subprocess.CompletedProcess([], 0, "", "")

    def open_class(self) -> None:
        pass  # a cluster's hub has no "being prepared": it serves once its accounts are made

    def command(self) -> list[str]:
        return pod_sandbox(self.etc, self.state, [sys.executable, "-m", "jupyterhub", "-f",
                                                  f"{ETC}/jupyterhub_config.py"], network=True)


HUBS = {"droplet": LoopbackHub, "z2jh": ChartHub}
