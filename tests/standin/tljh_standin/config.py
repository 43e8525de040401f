"""TLJH STAND-IN: tljh-config, TLJH's command for config.yaml.

`tljh-config [--config-path P] [--no-validate] show | set KEY VALUE | unset KEY | add-item KEY VALUE
| remove-item KEY VALUE | reload [hub|proxy]`, root only, with a lock on config.yaml. KEY is a dotted
path; VALUE is parsed as null, an int, a float, true or false, else kept as text (TLJH's rules).
Every change is validated against TLJH's own schema before it is written, and, stricter than TLJH,
an unknown key fails loudly (TLJH's schema cannot refuse one). Every call is recorded for the tests.
"""

import argparse
import fcntl
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

import jsonschema
import yaml

from tljh_standin import paths

_INT = re.compile(r"^-?[0-9]+$")
_FLOAT = re.compile(r"^-?[0-9]+\.[0-9]*$|^-?\.[0-9]+$")


def load(path):
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        config = yaml.safe_load(handle)
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise SystemExit(f"tljh-config (stand-in): {path} is not a mapping")
    return config


def save(path, config):
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder)
    with os.fdopen(handle, "w") as out:
        yaml.safe_dump(config, out, default_flow_style=False)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


def problems(config):
    """What TLJH would reject, in its schema or at hub start, plus unknown keys."""
    with open(paths.SCHEMA) as handle:
        schema = json.load(handle)
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    found = [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in validator.iter_errors(config)]
    known = set(schema["properties"]) - {"additionalProperties"} | {"auth"}
    found += [f"{key}: unknown key (TLJH has no such setting)" for key in config if key not in known]
    auth = config.get("auth", {})
    if not isinstance(auth, dict):
        found.append("auth: must be a mapping")
    else:
        for name in auth:
            if name != "type" and not name[:1].isupper():
                found.append(f"auth.{name}: TLJH's hub refuses lower-case keys under auth (ValueError)")
    return found


def parse_value(text):
    if text == "null":
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    return text


def _parent(config, key, create):
    parts = key.split(".")
    node = config
    for part in parts[:-1]:
        if part not in node:
            if not create:
                raise KeyError(key)
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise SystemExit(f"tljh-config (stand-in): {key}: {part} is not a mapping")
    return node, parts[-1]


def change(config, action, key, value=None):
    if action == "set":
        node, last = _parent(config, key, create=True)
        node[last] = parse_value(value)
    elif action == "unset":
        node, last = _parent(config, key, create=False)
        del node[last]
    elif action == "add-item":
        node, last = _parent(config, key, create=True)
        node.setdefault(last, []).append(parse_value(value))
    elif action == "remove-item":
        node, last = _parent(config, key, create=False)
        node[last].remove(parse_value(value))


def reload(component):
    unit = {"hub": "jupyterhub", "proxy": "traefik"}[component]
    subprocess.run(["systemctl", "restart", unit], check=True)
    if component == "hub":
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen("http://127.0.0.1:15001/hub/api", timeout=5):
                    print("Hub reload with new configuration complete")
                    return 0
            except OSError:
                time.sleep(1)
        print("tljh-config (stand-in): the hub did not come back (journalctl -u jupyterhub)", file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="tljh-config", description="TLJH stand-in: " + __doc__.splitlines()[0])
    parser.add_argument("--config-path", default=paths.CONFIG_YAML)
    parser.add_argument("--no-validate", dest="validate", action="store_false")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("show")
    for name, takes_value in (("set", True), ("unset", False), ("add-item", True), ("remove-item", True)):
        sub = actions.add_parser(name)
        sub.add_argument("key")
        if takes_value:
            sub.add_argument("value")
    sub = actions.add_parser("reload")
    sub.add_argument("component", nargs="?", default="hub", choices=["hub", "proxy"])
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("tljh-config needs root privileges (sudo tljh-config ...)", file=sys.stderr)
        return 1
    os.makedirs(paths.RECORDS, exist_ok=True)
    with open(os.path.join(paths.RECORDS, "tljh-config-calls.jsonl"), "a") as out:
        out.write(json.dumps(sys.argv[1:] if argv is None else argv) + "\n")
    if args.action == "reload":
        return reload(args.component)
    with open(args.config_path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        config = load(args.config_path)
        if args.action == "show":
            yaml.safe_dump(config, sys.stdout, default_flow_style=False)
            return 0
        try:
            change(config, args.action, args.key, getattr(args, "value", None))
        except (KeyError, ValueError):
            print(f"tljh-config (stand-in): {args.key} {getattr(args, 'value', '') or ''}: not found", file=sys.stderr)
            return 1
        if args.validate:
            found = problems(config)
            if found:
                print("tljh-config (stand-in): invalid configuration, nothing written:\n  " + "\n  ".join(found),
                      file=sys.stderr)
                return 1
        save(args.config_path, config)
    return 0
