"""TLJH STAND-IN: mamba and conda in the user environment (conda-forge is unreachable here).

Takes what TLJH documents for user packages, `install [-y|--yes] [-c|--channel CHANNEL]... SPEC...`
(plus -q and --override-channels), and `clean --all --yes` (emptying its package cache); refuses
any other command or flag, a malformed channel or package spec, or a call without -y (it would
wait for an answer no one gives); records every accepted call in /opt/tljh/stand-in/conda-calls.jsonl.
It installs nothing.
"""

import argparse
import json
import os
import re
import sys

from tljh_standin import paths

CHANNEL = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.-]*|https?://\S+)$")
_OP = r"(==|=|>=|<=|>|<|!=|~=)"
SPEC = re.compile(rf"^[A-Za-z0-9_][A-Za-z0-9_.-]*( ?{_OP} ?[A-Za-z0-9_.*+!]+(,{_OP}[A-Za-z0-9_.*+!]+)*)?$")


class Refused(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise Refused(message)


def main(argv=None):
    tool = os.path.basename(sys.argv[0])
    argv = sys.argv[1:] if argv is None else argv
    parser = Parser(prog=f"{tool} (TLJH stand-in)")
    commands = parser.add_subparsers(dest="command", required=True)
    install = commands.add_parser("install")
    install.add_argument("-y", "--yes", action="store_true")
    install.add_argument("-q", "--quiet", action="store_true")
    install.add_argument("-c", "--channel", action="append", default=[])
    install.add_argument("--override-channels", action="store_true")
    install.add_argument("specs", nargs="+")
    clean = commands.add_parser("clean")
    clean.add_argument("-a", "--all", action="store_true")
    clean.add_argument("-y", "--yes", action="store_true")
    try:
        args = parser.parse_args(argv)
        if not args.yes:
            raise Refused(f"{args.command} without --yes would wait for an answer")
        if args.command == "clean":
            return _clean(tool, args)
        for channel in args.channel:
            if not CHANNEL.match(channel):
                raise Refused(f"malformed channel {channel!r}")
        for spec in args.specs:
            if not SPEC.match(spec):
                raise Refused(f"malformed package spec {spec!r}")
    except Refused as error:
        print(f"{tool} (TLJH stand-in): {error}", file=sys.stderr)
        return 2
    os.makedirs(paths.RECORDS, exist_ok=True)
    with open(os.path.join(paths.RECORDS, "conda-calls.jsonl"), "a") as out:
        out.write(json.dumps({"tool": tool, "command": "install", "channels": args.channel,
                              "packages": args.specs, "override_channels": args.override_channels}) + "\n")
    print(f"{tool} (TLJH stand-in): recorded install of {' '.join(args.specs)} "
          f"from {', '.join(args.channel) or 'the default channels'}")
    return 0


def _clean(tool, args):
    cache = os.path.join(paths.USER, "pkgs")  # where conda keeps downloaded packages
    if args.all and os.path.isdir(cache):
        for name in os.listdir(cache):
            os.unlink(os.path.join(cache, name))
    os.makedirs(paths.RECORDS, exist_ok=True)
    with open(os.path.join(paths.RECORDS, "conda-calls.jsonl"), "a") as out:
        out.write(json.dumps({"tool": tool, "command": "clean", "all": args.all}) + "\n")
    print(f"{tool} (TLJH stand-in): cleaned the package cache")
    return 0
