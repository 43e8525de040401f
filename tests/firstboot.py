"""What the first-boot tests check on a test droplet, shared by test_firstboot*.py."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml
from packaging.requirements import Requirement

import testdroplet
from conftest import CASES, cli
from classimage.cli import USER_DATA
from classimage import droplet as layout
from classimage import plan, spec, tljh
from standin import serve

TEST_CA = CASES / "droplet" / "test-ca.pem"
BOOT_DEADLINE = 900  # seconds for cloud-init to finish a first boot


def render_for(droplet: testdroplet.TestDroplet, source: Path | dict, stage: str = plan.FULL) -> tuple[str, Path]:
    """The spec with this network's settings added, rendered by the CLI as an instructor would:
    the user data of `stage` (full: the one-piece user data)."""
    data = yaml.safe_load(source.read_text()) if isinstance(source, Path) else json.loads(json.dumps(source))
    environment = data.get("environment") or {}
    if isinstance(source, Path) and environment.get("from_repo"):  # the copy lives elsewhere
        environment["from_repo"] = str((source.parent / environment["from_repo"]).resolve())
    network = data.setdefault("network", {})
    network["proxy"] = droplet.proxy.url
    network["ca_certificates"] = testdroplet.host_extra_cas() + [TEST_CA.read_text()]
    data.setdefault("tljh", {})["bootstrap_url"] = serve.URL
    path = droplet.workdir / "spec.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    out = droplet.workdir / "rendered"
    result = cli("render", str(path), "--out", str(out))
    assert result.returncode == 0, result.stderr.decode()
    return (out / USER_DATA[stage]).read_text(), path


def boot(droplet, source, instance_id="i-first") -> tuple[dict, Path]:
    user_data, spec_path = render_for(droplet, source)
    droplet.seed(user_data, instance_id)
    droplet.boot()
    return droplet.wait_for_cloud_init(BOOT_DEADLINE), spec_path


def explain(droplet) -> str:
    """What to read when an assertion fails: our status, our log's tail, cloud-init's output tail."""
    status = droplet.sh(f"{layout.RUNNER} status").stdout if droplet.nspawn else ""
    log = droplet.path(layout.LOG)
    output = droplet.path("/var/log/cloud-init-output.log")
    tail = lambda p: "\n".join(p.read_text(errors="replace").splitlines()[-25:]) if p.exists() else "(none)"
    return f"\n--- status\n{status}\n--- {layout.LOG}\n{tail(log)}\n--- cloud-init-output.log\n{tail(output)}"


def records(droplet, name: str) -> list:
    path = droplet.path(f"/opt/tljh/stand-in/{name}")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def fetch(droplet, path: str, opener=None, data: dict | None = None, timeout=15):
    """A request to the droplet's port 80 from the host, as a student's browser makes it."""
    opener = opener or urllib.request.build_opener(urllib.request.ProxyHandler({}))
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    try:
        with opener.open(f"http://{droplet.ip}{path}", data=body, timeout=timeout) as response:
            return response.status, response.read().decode(), response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace"), error.headers
    except urllib.error.URLError as error:  # nothing listens
        return None, str(error.reason), {}


def assert_ready(droplet, spec_path: Path, *, bootstraps: int = 1, first_boot_clean: bool = True) -> dict:
    """Everything 'ready' means, checked on the droplet itself."""
    loaded = spec.load_file(spec_path)
    course = loaded.spec
    if first_boot_clean:
        result = droplet.read_json("/var/lib/cloud/data/result.json")
        assert result["v1"]["errors"] == [], result
    status = droplet.read_json(layout.STATUS)
    assert status["state"] == "ready", explain(droplet)
    assert status["spec_digest"] == loaded.digest
    assert [s["name"] for s in status["steps"]] == [s.name for s in plan.steps(course)]
    for step in status["steps"]:
        assert step["state"] == "done" and step["seconds"] >= 0 and step["started"] <= step["finished"], step
    # apt: the prerequisites and the course's packages
    packages = [*plan.PREREQUISITES, *course.environment.apt]
    installed = droplet.sh("dpkg-query --show --showformat='${Package} ${db:Status-Abbrev}\\n' " + " ".join(packages))
    states = dict(line.split(maxsplit=1) for line in installed.stdout.splitlines())
    assert {name: states.get(name, "").strip() for name in packages} == {name: "ii" for name in packages}
    # TLJH: bootstrapped once, at the pinned version, with the admins and the progress page
    calls = records(droplet, "bootstrap-calls.jsonl")
    assert len(calls) == bootstraps, calls
    call = calls[-1]
    admins = [w for a in course.hub.admins for w in ("--admin", a)]
    assert call["argv"] == ["--version", course.tljh.version, "--show-progress-page", *admins]
    assert call["version"] == course.tljh.version
    assert call["proxy"] == course.network.proxy  # the bootstrap downloaded through the spec's proxy
    # config.yaml: what the spec implies, valid for TLJH (the stand-in also refused anything invalid)
    written = yaml.safe_load(droplet.path(tljh.CONFIG_YAML).read_text())
    assert written == tljh.config(course)
    tljh.check(written)
    assert droplet.path(f"{tljh.CONFIG_D}/classimage.py").read_text() == tljh.jupyterhub_config(course)
    # conda: one call with the spec's channels and packages
    conda = list(course.environment.conda.packages) + ([f"python={course.environment.python}"]
                                                       if course.environment.python else [])
    if conda:
        channels = list(course.environment.conda.channels)
        assert records(droplet, "conda-calls.jsonl") == [{"tool": "mamba", "command": "install", "channels": channels,
                                                          "packages": conda, "override_channels": False}]
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
        result = droplet.sh(f"{display}/opt/tljh/user/bin/python3 /var/tmp/import-probe.py")
        assert result.returncode == 0, result.stderr
    # the network settings: the course's CAs in the system store, pip and conda told about them
    bundle = droplet.path("/etc/ssl/certs/ca-certificates.crt").read_text()
    assert all(pem.strip() in bundle for pem in course.network.ca_certificates)
    assert f"proxy = {course.network.proxy}" in droplet.path("/etc/pip.conf").read_text()
    # the hub answers, through the proxy on port 80, from outside the droplet
    code, body, headers = fetch(droplet, "/hub/api")
    assert code == 200 and "version" in json.loads(body) and headers["X-Served-By"] == "TLJH stand-in proxy"
    assert fetch(droplet, "/hub/health")[0] == 200
    # the provisioning status, as a health check reads it: through the hub's proxy, no log tails
    code, body, _ = fetch(droplet, f"/services/{tljh.STATUS_SERVICE}/")
    assert code == 200, body
    assert json.loads(body)["state"] == "ready" and "log_tail" not in body
    return status


class ProgressWatcher(threading.Thread):
    """Polls the droplet's port 80 during its first boot, keeping what answered."""

    def __init__(self, droplet):
        super().__init__(daemon=True)
        self.droplet, self.seen, self.stopped = droplet, [], threading.Event()

    def run(self):
        while not self.stopped.is_set():
            try:
                code, body, _ = fetch(self.droplet, "/", timeout=2)
                if code:
                    self.seen.append(body)
            except OSError:  # e.g. a timeout while the port changes hands
                pass
            self.stopped.wait(0.3)


def assert_failed(droplet, step: str, cloud_init: dict, *expected_output: str) -> dict:
    """Failure is visible: our status names the step with its log tail; cloud-init reports an error;
    nothing claims ready."""
    status = droplet.read_json(layout.STATUS)
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
    output = droplet.path("/var/log/cloud-init-output.log").read_text()
    assert "FAILED" in output and expected_output[0] in output
    return status


@contextlib.contextmanager
def droplets(image: Path, folder: Path):
    """Make droplets (with the TLJH stand-in served in them); afterwards collect their logs and
    leave nothing behind: no container, veth, proxy or process of theirs."""
    made: list[testdroplet.TestDroplet] = []

    def make(name: str = "droplet", layers: list[Path] | None = None, stand_in: bool = True,
             inspect_only: bool = False) -> testdroplet.TestDroplet:
        """A droplet on the image, or on `layers` (a snapshot over the image); `inspect_only` adds
        nothing to what it stands on (no cached packages, no stand-in)."""
        droplet = testdroplet.TestDroplet(folder / name, layers or image, seed_downloads=not inspect_only)
        stand_in = stand_in and not inspect_only
        if stand_in:
            serve.install(droplet.root)
        made.append(droplet)
        return droplet

    try:
        yield make
    finally:
        for droplet in made:
            droplet.collect(folder / f"{droplet.workdir.name}-logs")
            droplet.destroy()
    for droplet in made:
        assert not Path(f"/sys/class/net/{droplet.veth}").exists()
    leftovers = subprocess.run(["pgrep", "-f", str(folder)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], f"processes left behind: {leftovers}"
    mounts = [line for line in Path("/proc/self/mounts").read_text().splitlines() if str(folder) in line]
    assert mounts == [], f"mounts left behind: {mounts}"
