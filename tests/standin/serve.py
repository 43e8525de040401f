"""Serve the TLJH stand-in on a test droplet's loopback, at the URL specs give as tljh.bootstrap_url.

`install(root)` copies the stand-in into a droplet's root filesystem (/srv/tljh-stand-in) with a
systemd unit that serves it on 127.0.0.1:8765 from boot, before cloud-init's final stage runs the
bootstrap. `fail(root, True)` makes the served bootstrap fail until `fail(root, False)`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
PORT = 8765
URL = f"http://127.0.0.1:{PORT}/bootstrap.py"
SERVED = "/srv/tljh-stand-in"
TLJH_SCHEMA = HERE.parent.parent / "schemas" / "tljh-config.schema.json"
UNIT = f"""\
# classimage tests: serves the TLJH stand-in on loopback (not part of any real droplet)
[Unit]
Description=TLJH stand-in download server (classimage tests)
Before=cloud-final.service

[Service]
ExecStart=/usr/bin/python3 -m http.server {PORT} --bind 127.0.0.1 --directory {SERVED}

[Install]
WantedBy=multi-user.target
"""


def install(root: Path) -> None:
    served = root / SERVED.lstrip("/")
    package = served / "tljh_standin"
    shutil.copytree(HERE / "tljh_standin", package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(HERE / "bootstrap.py", served / "bootstrap.py")
    shutil.copy(TLJH_SCHEMA, package / "config.schema.json")
    (package / "MANIFEST").write_text("\n".join(sorted(p.name for p in package.iterdir())) + "\n")
    unit = root / "etc/systemd/system/tljh-stand-in-server.service"
    unit.write_text(UNIT)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / unit.name).symlink_to(f"/etc/systemd/system/{unit.name}")


def fail(root: Path, failing: bool) -> None:
    marker = root / SERVED.lstrip("/") / "FAIL"
    if failing:
        marker.write_text("the stand-in bootstrap fails while this file is served\n")
    else:
        marker.unlink(missing_ok=True)
