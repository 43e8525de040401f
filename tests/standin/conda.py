#!/opt/tljh/user/bin/python3
"""STAND-IN for Miniforge's `conda` and `mamba` in TLJH's user environment (classimage tests).

Miniforge and conda-forge cannot be downloaded on the machines the tests run on, so the user
environment is a Python virtualenv made from PyPI before TLJH's installer runs. TLJH 2.0.0 then
finds an existing environment and only asks conda for what it has (`list --json`) and for a
reinstall of conda and mamba at their versions. This answers exactly those calls, and checks and
records the calls classimage makes (`install` into the prefix, `clean`): it installs nothing.
Anything else is refused, loudly, so a call nobody planned for cannot pass unseen.
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import re
import sys

PREFIX = "/opt/tljh/user"
RECORDS = "/var/lib/tljh-downloads-stand-in/conda-calls.jsonl"
# What Miniforge 24.7.1-2 (TLJH 2.0.0's) ships: TLJH reinstalls these, pinned, on an existing prefix.
CONDA, MAMBA = "24.7.1", "1.5.9"
# conda's MatchSpec forms: [channel::]name, then an operator and versions, or a space, a version
# and optionally a build string (`pandas 2.1.*`, `xarray 2024.1.0 pyhd8ed1ab_0`).
NAME, VERSION, OPERATOR = r"[A-Za-z0-9_][A-Za-z0-9_.-]*", r"[A-Za-z0-9_.*+!]+", r"(==|=|>=|<=|>|<|!=|~=)"
MATCHSPEC = re.compile(rf"({NAME}::)?{NAME}(( ?{OPERATOR} ?{VERSION}(,{OPERATOR}{VERSION})*)"
                       rf"|( [A-Za-z0-9_.*+!=<>,|]+( {VERSION})?))?")
CHANNEL = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.-]*|https://[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._~%+-]+)*/?)$")


def refuse(message):
    print("conda stand-in: " + message, file=sys.stderr)
    return 2


def record(entry):
    os.makedirs(os.path.dirname(RECORDS), exist_ok=True)
    entry["time"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
    with open(RECORDS, "a") as out:
        out.write(json.dumps(entry) + "\n")


def installed():
    packages = [{"name": "python", "version": "%d.%d.%d" % sys.version_info[:3], "channel": "conda-forge"},
                {"name": "conda", "version": CONDA, "channel": "conda-forge"},
                {"name": "mamba", "version": MAMBA, "channel": "conda-forge"}]
    for dist in importlib.metadata.distributions():
        packages.append({"name": dist.metadata["Name"].lower(), "version": dist.version, "channel": "pypi"})
    return packages


def install(args, tool):
    if os.path.abspath(args.prefix or "") != PREFIX:
        return refuse(f"install needs --prefix {PREFIX} (TLJH's user environment), got {args.prefix!r}")
    if not args.yes:
        return refuse("install without --yes would wait for an answer that never comes")
    for channel in args.channel:
        if not CHANNEL.fullmatch(channel):
            return refuse(f"{channel!r} is not a channel")
    for spec in args.packages:
        if not MATCHSPEC.fullmatch(spec):
            return refuse(f"{spec!r} is not a package spec")
    python = [s for s in args.packages if re.match(r"^python ?=", s)]
    have = "%d.%d" % sys.version_info[:2]
    if python and not re.fullmatch(r"python ?==? ?" + re.escape(have) + r"(\.\*)?", python[0]):
        return refuse(f"{python[0]} asks for another Python than this environment's {have} (a virtualenv)")
    if args.force_reinstall and sorted(args.packages) != sorted([f"conda=={CONDA}", f"mamba=={MAMBA}"]):
        return refuse(f"--force-reinstall of {args.packages}: TLJH reinstalls only conda and mamba")
    record({"tool": tool, "command": "install", "channels": args.channel, "packages": args.packages,
            "force_reinstall": args.force_reinstall, "prefix": args.prefix})
    print(f"conda stand-in: would install {' '.join(args.packages)} (conda-forge is out of reach here)")
    return 0


def main(argv=None):
    tool = os.path.basename(sys.argv[0])
    parser = argparse.ArgumentParser(prog=f"{tool} (stand-in)")
    verbs = parser.add_subparsers(dest="verb", required=True)
    listing = verbs.add_parser("list")
    listing.add_argument("--json", action="store_true", required=True)
    adding = verbs.add_parser("install")
    adding.add_argument("--yes", "-y", action="store_true")
    adding.add_argument("--force-reinstall", action="store_true")
    adding.add_argument("--channel", "-c", action="append", default=[])
    adding.add_argument("--prefix", "-p")
    adding.add_argument("--override-channels", action="store_true")
    adding.add_argument("packages", nargs="+")
    cleaning = verbs.add_parser("clean")
    cleaning.add_argument("--all", action="store_true", required=True)
    cleaning.add_argument("--yes", "-y", action="store_true", required=True)
    args = parser.parse_args(argv)
    if args.verb == "list":
        print(json.dumps(installed()))
        return 0
    if args.verb == "install":
        return install(args, tool)
    record({"tool": tool, "command": "clean"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
