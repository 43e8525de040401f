"""The real JupyterHub on loopback, configured as on a droplet, in seconds: TLJH 2.0.0's own
jupyterhub_config.py (from the vendored release archive) reads the config.yaml classimage renders and
then loads the jupyterhub_config.d file classimage renders, byte for byte as the user data writes
them; the admins' accounts are made by classimage's hubaccounts.py from the plan the user data
carries. Everything runs in a bubblewrap sandbox whose /opt/tljh, /var/lib/classimage and /home
are folders of the test, so the droplet's absolute paths hold: the rest of the machine but the
temporary folder is read-only.

Stand-ins, in a last jupyterhub_config.d file (STANDINS), for what a test on loopback cannot use:
the proxy (TLJH's traefik: the tests talk to the hub's own port, which serves every /hub/ page), the
spawner (TLJH's makes Unix users: a stand-in refuses to start servers), and the managed services
(the idle culler and classimage's status service are programs of a droplet). The test droplets
(tests/test_hub_attacks_droplet.py) run the same attacks through the real traefik and TLJH."""

from __future__ import annotations

import atexit
import contextlib
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

import tljh_downloads
from hubclient import Browser
from classimage import hubaccounts, provision, spec, tljh

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


class LoopbackHub:
    """A droplet's hub configuration under `folder`: render it, make the admins' accounts, open the
    class (or not), start and stop the hub."""

    def __init__(self, folder: Path, course: spec.Spec, hashes: dict[str, str | None]):
        self.folder, self.course, self.hashes = folder, course, hashes
        self.opt, self.lib, self.home = folder / "opt-tljh", folder / "var-lib-classimage", folder / "home"
        for made in (self.opt / "config" / "jupyterhub_config.d", self.opt / "state", self.lib, self.home):
            made.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log = folder / "hub.log"
        self.write_config()

    def inside(self, path: str) -> Path:
        """Where the droplet's `path` is in this folder."""
        for prefix, folder in (("/opt/tljh/", self.opt), (provision.STATE + "/", self.lib), ("/home/", self.home)):
            if path.startswith(prefix):
                return folder / path[len(prefix):]
        raise ValueError(path)

    def write_config(self, course: spec.Spec | None = None) -> None:
        """config.yaml and classimage's jupyterhub_config.d file, as the hub-config step writes them."""
        self.course = course or self.course
        self.inside(tljh.CONFIG_YAML).write_text(tljh.config_yaml(self.course))
        self.inside(tljh.CLASSIMAGE_CONFIG).write_text(tljh.jupyterhub_config(self.course))
        standins = self.inside(tljh.CONFIG_D) / STANDINS
        standins.write_text(STANDINS_CONFIG.format(hub=self.url))

    def sandbox(self, *argv: str, **kwargs) -> list[str]:
        temporary = tempfile.gettempdir()  # the tests' folders, and the hub's scratch space
        return ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--bind", temporary, temporary,
                "--tmpfs", "/opt", "--bind", str(self.opt), "/opt/tljh",
                "--tmpfs", "/var/lib", "--bind", str(self.lib), provision.STATE,
                "--bind", str(self.home), "/home",
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

    def start(self, timeout: float = 90) -> None:
        """Start the hub the way TLJH's unit does, and wait for its API."""
        assert self.process is None
        argv = self.sandbox(sys.executable, "-m", "jupyterhub", "-f", str(tljh_source() / "tljh" /
                                                                           "jupyterhub_config.py"), "--upgrade-db")
        with open(self.log, "ab") as log:  # its own process group: stop() ends the sandbox and the hub in it
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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
                raise AssertionError(f"the hub exited ({self.process.returncode}):\n{self.tail()}")
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

    def record(self) -> dict:
        path = self.inside(tljh.ACCOUNTS_RECORD)
        return json.loads(path.read_text()) if path.exists() else {}
