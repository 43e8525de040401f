#!/usr/bin/env python3
"""TLJH STAND-IN: the bootstrap script of The Littlest JupyterHub, as classimage's tests serve it.

The real TLJH cannot be installed on the machines the tests run on (it, Miniforge and traefik come
from GitHub and anaconda.org). This stand-in implements TLJH's documented bootstrap interface
(shared/reference/tljh/CONTRACT.md) and checks everything it is given:

- the bootstrap's own flags, `--version` and `--show-progress-page` (a page on port 80 while it
  installs); every other flag goes to the installer, whose flags (`--admin`, `--plugin`,
  `--user-requirements-txt-url`) are checked as its argument parser would;
- the host checks: Ubuntu 22.04+ or Debian 11+, Python 3.9+, systemd as init, not in Docker;
- then, like TLJH: a hub virtualenv in /opt/tljh/hub with TLJH's hub packages installed by pip
  through whatever proxy and CAs the environment names (jupyterhub <6, NativeAuthenticator 1.3,
  FirstUseAuthenticator, the idle culler), and the installer run from it.

It records every call in /opt/tljh/stand-in/bootstrap-calls.jsonl, and fails on request (when the
server it was downloaded from has a FAIL file) so tests can see failures and resumes.
Stdlib only: it runs with the system's python3, as TLJH's bootstrap does.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

SERVED = "http://127.0.0.1:8765"  # where the tests serve the stand-in, on the droplet's loopback
PREFIX = os.environ.get("TLJH_INSTALL_PREFIX", "/opt/tljh")
HUB = os.path.join(PREFIX, "hub")
RECORDS = os.path.join(PREFIX, "stand-in")
RELEASES = ("1.0.0", "2.0.0")  # the TLJH releases this stand-in can stand in for
HUB_PACKAGES = ("jupyterhub>=5.2,<6", "jupyterhub-nativeauthenticator==1.3.0",
                "jupyterhub-firstuseauthenticator>=1.1", "jupyterhub-idle-culler<2", "pyyaml", "jsonschema")


def say(message):
    print("TLJH stand-in bootstrap: " + message, flush=True)


def refuse(message, code=1):
    print("TLJH stand-in bootstrap: " + message, file=sys.stderr, flush=True)
    sys.exit(code)


def installer_parser():
    """The installer's own flags (tljh/installer.py); the bootstrap passes them through unchecked,
    the installer's parser refuses anything else."""
    parser = argparse.ArgumentParser(prog="tljh.installer (stand-in)")
    parser.add_argument("--admin", action="append", default=[], help="name or name:password")
    parser.add_argument("--plugin", nargs="*", action="extend", default=[], help="pip specs of TLJH plugins")
    parser.add_argument("--user-requirements-txt-url", help="pip requirements for the user environment")
    return parser


def check_host():
    release = {}
    with open("/etc/os-release") as handle:
        for line in handle:
            key, _, value = line.strip().partition("=")
            release[key] = value.strip('"')
    distro, version = release.get("ID"), release.get("VERSION_ID", "0")
    major = float(version) if version.replace(".", "", 1).isdigit() else 0
    if not ((distro == "ubuntu" and major >= 22.04) or (distro == "debian" and major >= 11)):
        refuse(f"The Littlest JupyterHub needs Ubuntu 22.04+ or Debian 11+, not {distro} {version}")
    if sys.version_info < (3, 9):
        refuse(f"The Littlest JupyterHub needs Python 3.9+, not {platform.python_version()}")
    if os.path.exists("/.dockerenv"):
        refuse("The Littlest JupyterHub cannot run inside a Docker container")
    if not os.path.isdir("/run/systemd/system"):
        refuse("Systemd is required to run The Littlest JupyterHub")


def resolve(version):
    """`latest`, a partial (`2`, `2.0`), a release, or a 40-character commit, as TLJH accepts."""
    if version == "latest":
        return RELEASES[-1]
    matching = [r for r in RELEASES if r == version or r.startswith(version + ".")]
    if matching:
        return matching[-1]
    if len(version) == 40 and all(c in "0123456789abcdef" for c in version):
        return f"{RELEASES[-1]}+g{version[:7]}"
    refuse(f"no TLJH version {version!r} (the stand-in knows {', '.join(RELEASES)}, latest, or a commit)")


def fetch(path):
    with urllib.request.urlopen(f"{SERVED}/{path}", timeout=30) as response:
        return response.read()


def failing_on_request():
    try:
        fetch("FAIL")
        return True
    except urllib.error.HTTPError:
        return False


def record(entry):
    os.makedirs(RECORDS, exist_ok=True)
    with open(os.path.join(RECORDS, "bootstrap-calls.jsonl"), "a") as out:
        out.write(json.dumps(entry) + "\n")


def progress_page():
    """TLJH serves its install log on port 80 while it installs; so does the stand-in."""
    folder = os.path.join(RECORDS, "progress")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "index.html"), "w") as page:
        page.write("<html><body><h1>TLJH stand-in: installing The Littlest JupyterHub</h1>"
                   "<p>This is classimage's test stand-in for TLJH's progress page.</p></body></html>\n")
    return subprocess.Popen([sys.executable, "-m", "http.server", "80", "--directory", folder],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def install_hub(version):
    """The hub virtualenv with TLJH's hub packages (real, from PyPI) and the stand-in's own code,
    registered as the distribution the-littlest-jupyterhub at `version`."""
    if not os.path.exists(os.path.join(HUB, "bin", "python3")):
        subprocess.run([sys.executable, "-m", "venv", HUB], check=True)
    subprocess.run([os.path.join(HUB, "bin", "pip"), "install", "--no-input", "--progress-bar", "off",
                    *HUB_PACKAGES], check=True)
    site = subprocess.run([os.path.join(HUB, "bin", "python3"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    package = os.path.join(site, "tljh_standin")
    shutil.rmtree(package, ignore_errors=True)
    os.makedirs(package)
    for name in fetch("tljh_standin/MANIFEST").decode().split():
        with open(os.path.join(package, name), "wb") as out:
            out.write(fetch(f"tljh_standin/{name}"))
    for old in os.listdir(site):
        if old.startswith("the_littlest_jupyterhub-"):
            shutil.rmtree(os.path.join(site, old))
    info = os.path.join(site, f"the_littlest_jupyterhub-{version}.dist-info")
    os.makedirs(info)
    with open(os.path.join(info, "METADATA"), "w") as out:
        out.write(f"Metadata-Version: 2.1\nName: the-littlest-jupyterhub\nVersion: {version}\n"
                  "Summary: classimage's TLJH stand-in (not TLJH)\n")
    for name, text in (("INSTALLER", "tljh-stand-in\n"), ("RECORD", "")):
        with open(os.path.join(info, name), "w") as out:
            out.write(text)


def main():
    own = argparse.ArgumentParser(prog="bootstrap.py (TLJH stand-in)", add_help=False)
    own.add_argument("--show-progress-page", action="store_true")
    own.add_argument("--version", default="latest")
    flags, passed_on = own.parse_known_args()
    installer_parser().parse_args(passed_on)  # exits 2 on a flag the installer would not take
    if os.geteuid() != 0:
        refuse("run it as root (sudo python3 - ...)")
    check_host()
    version = resolve(flags.version)
    record({"time": datetime.datetime.now(datetime.timezone.utc).isoformat(), "argv": sys.argv[1:],
            "version": version, "proxy": os.environ.get("https_proxy"),
            "ssl_cert_file": os.environ.get("SSL_CERT_FILE")})
    page = progress_page() if flags.show_progress_page else None
    try:
        if failing_on_request():
            refuse("failing on request (the test server has a FAIL file)")
        say(f"installing The Littlest JupyterHub {version} (stand-in) into {PREFIX}")
        install_hub(version)
    finally:
        if page:
            page.terminate()
            page.wait()
    result = subprocess.run([os.path.join(HUB, "bin", "python3"), "-m", "tljh_standin.installer", *passed_on])
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
