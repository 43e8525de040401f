"""TLJH STAND-IN: the installer (tljh/installer.py), run by the stand-in bootstrap from the hub venv.

Does what TLJH's installer documents (shared/reference/tljh/CONTRACT.md), in its order:
the layout under /opt/tljh, the user environment, `ensure_config_yaml` (keeps a config.yaml
written before it, rewrites it), `ensure_admins` (replaces users.admin with the --admin names;
`name:password` stored hashed in state/passwords.dbm), the systemd units jupyterhub.service and
traefik.service, /usr/bin/tljh-config, and waits for the hub. Unlike TLJH it validates the
resulting config.yaml against TLJH's schema (and TLJH's unwritten rules) and refuses a bad one.

The user environment is a real Python virtualenv (pip installs into it are real); its `mamba` and
`conda` are stand-ins that check and record each call (conda-forge is unreachable here).
"""

import argparse
import dbm
import hashlib
import os
import secrets
import subprocess
import sys
import time
import urllib.request


from tljh_standin import config as tljh_config
from tljh_standin import paths

JUPYTERHUB_UNIT = f"""\
# TLJH stand-in: the hub (the real JupyterHub, configured the way TLJH documents)
[Unit]
Description=JupyterHub (TLJH stand-in)
After=traefik.service

[Service]
User=root
Restart=always
WorkingDirectory={paths.STATE}
Environment=TLJH_INSTALL_PREFIX={paths.PREFIX}
ExecStart={paths.HUB}/bin/python3 -m jupyterhub -f {paths.HUB_CONFIG}

[Install]
WantedBy=multi-user.target
"""

TRAEFIK_UNIT = f"""\
# TLJH stand-in: the proxy on port 80 that TLJH runs traefik for
[Unit]
Description=traefik proxy (TLJH stand-in)

[Service]
Restart=always
ExecStart={paths.HUB}/bin/python3 -m tljh_standin.proxy

[Install]
WantedBy=multi-user.target
"""

CONDA_STAND_IN = f"""#!{paths.HUB}/bin/python3
# TLJH stand-in for the user environment's mamba/conda: checks and records each call.
import sys
from tljh_standin.conda import main
sys.exit(main())
"""


def log(message):
    os.makedirs(paths.PREFIX, exist_ok=True)
    with open(os.path.join(paths.PREFIX, "installer.log"), "a") as out:
        out.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
    print(f"TLJH stand-in installer: {message}", flush=True)


def ensure_layout():
    for folder in (paths.CONFIG, paths.CONFIG_D, os.path.join(paths.CONFIG, "traefik_config.d"), paths.STATE,
                   paths.RECORDS):
        os.makedirs(folder, exist_ok=True)
    os.chmod(paths.STATE, 0o700)


def ensure_user_env():
    if not os.path.exists(os.path.join(paths.USER, "bin", "python3")):
        log("creating the user environment (a Python virtualenv standing in for Miniforge)")
        subprocess.run(["/usr/bin/python3", "-m", "venv", paths.USER], check=True)
    for name in ("mamba", "conda"):
        target = os.path.join(paths.USER, "bin", name)
        with open(target, "w") as out:
            out.write(CONDA_STAND_IN)
        os.chmod(target, 0o755)


def ensure_config_yaml():
    """Keep a config.yaml written before the install; write it back (TLJH runs plugin hooks here)."""
    config = tljh_config.load(paths.CONFIG_YAML)
    tljh_config.save(paths.CONFIG_YAML, config)
    return config


def ensure_admins(admins):
    if not admins:
        return
    config = tljh_config.load(paths.CONFIG_YAML)
    names = []
    for entry in admins:
        name, _, password = entry.partition(":")
        names.append(name)
        if password:
            with dbm.open(os.path.join(paths.STATE, "passwords.dbm"), "c") as db:
                db[name] = hashlib.sha256(password.encode()).hexdigest()
    config.setdefault("users", {})["admin"] = names
    tljh_config.save(paths.CONFIG_YAML, config)
    log(f"admins: {', '.join(names)}")


def ensure_secrets():
    secret = os.path.join(paths.STATE, "traefik-api.secret")
    if not os.path.exists(secret):
        with open(os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600), "w") as out:
            out.write(secrets.token_hex(32))


def ensure_services():
    for name, unit in (("jupyterhub", JUPYTERHUB_UNIT), ("traefik", TRAEFIK_UNIT)):
        with open(f"/etc/systemd/system/{name}.service", "w") as out:
            out.write(unit)
    with open(paths.HUB_CONFIG, "w") as out:
        out.write(open(os.path.join(os.path.dirname(__file__), "jupyterhub_config.py")).read())
    tljh_config_bin = os.path.join(paths.HUB, "bin", "tljh-config")
    with open(tljh_config_bin, "w") as out:
        out.write(f"#!{paths.HUB}/bin/python3\nimport sys\nfrom tljh_standin.config import main\nsys.exit(main())\n")
    os.chmod(tljh_config_bin, 0o755)
    if os.path.lexists("/usr/bin/tljh-config"):
        os.unlink("/usr/bin/tljh-config")
    os.symlink(tljh_config_bin, "/usr/bin/tljh-config")
    subprocess.run(["systemctl", "daemon-reload"], check=True)
    subprocess.run(["systemctl", "enable", "jupyterhub", "traefik"], check=True, capture_output=True)
    subprocess.run(["systemctl", "restart", "traefik", "jupyterhub"], check=True)


def wait_for_hub(seconds=90):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen("http://127.0.0.1:15001/hub/api", timeout=5):
                return
        except OSError:
            time.sleep(1)
    sys.exit("TLJH stand-in installer: the hub did not answer on 127.0.0.1:15001 (journalctl -u jupyterhub)")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="tljh.installer (stand-in)")
    parser.add_argument("--admin", action="append", default=[])
    parser.add_argument("--plugin", nargs="*", action="extend", default=[])
    parser.add_argument("--user-requirements-txt-url")
    args = parser.parse_args(argv)
    ensure_layout()
    ensure_user_env()
    if args.user_requirements_txt_url:
        with urllib.request.urlopen(args.user_requirements_txt_url, timeout=60) as response:
            requirements = os.path.join(paths.RECORDS, "user-requirements.txt")
            with open(requirements, "wb") as out:
                out.write(response.read())
        subprocess.run([os.path.join(paths.USER, "bin", "pip"), "install", "-r", requirements], check=True)
    if args.plugin:
        subprocess.run([os.path.join(paths.HUB, "bin", "pip"), "install", *args.plugin], check=True)
    ensure_config_yaml()
    ensure_admins(args.admin)
    problems = tljh_config.problems(tljh_config.load(paths.CONFIG_YAML))
    if problems:
        sys.exit("TLJH stand-in installer: config.yaml is invalid for TLJH:\n  " + "\n  ".join(problems))
    ensure_secrets()
    ensure_services()
    wait_for_hub()
    log("done: the hub answers")


if __name__ == "__main__":
    main()
