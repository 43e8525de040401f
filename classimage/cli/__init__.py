"""The command line: `classimage VERB` (or `python -m classimage VERB`). Verbs follow what an
instructor does: start a course repository, validate a spec, set the admins' passwords, render what
the droplet needs, build a snapshot, bring the class up at DigitalOcean, see its status, back up and
restore its data, take it down, share the links, explain a key.

Exit status: 0 done, 1 the spec has problems (each printed as FILE:LINE key.path: what (fix)),
2 usage error (bad arguments, a file that cannot be read, a directory that cannot be written, no
DigitalOcean token), 3 Packer failed (build), or status found no droplet, 4 DigitalOcean refused or
provisioning failed, 130 interrupted."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# jsonschema imports every optional format checker it finds; rfc3987_syntax, when installed (Jupyter
# packages pull it in), compiles a grammar at import: 0.7 s on every command, for the `iri` format
# no classimage schema uses. The command line is our own process, so it declines that import.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

# The verbs live by their world: cli/pipeline_verbs.py (spec in, files out) and cli/cloud_verbs.py
# (DigitalOcean); cli/shared.py holds what both use. Here: the table of verbs, its parser, and main.
from classimage import __version__  # noqa: E402 (after the import declined above)
from classimage.cli.cloud_verbs import (  # noqa: E402
    run_backup,
    run_build,
    run_down,
    run_restore,
    run_status,
    run_up,
)
from classimage.cli.pipeline_verbs import (  # noqa: E402
    run_admin_password,
    run_explain,
    run_init,
    run_links,
    run_render,
    run_validate,
)
from classimage.cli.shared import (  # noqa: E402
    CLOUD,  # noqa: F401 (an exit status, read from here by those that run main)
    DROPLET,
    FAILED,
    INTERNAL,
    INVALID,
    OK,  # noqa: F401 (an exit status, read from here by those that run main)
    USAGE,
    Z2JH,
    UsageError,
    program,
)
from classimage.pipeline import admins, init, links, packer, workflows, yamlsource  # noqa: E402
from classimage.pipeline.problems import SpecError  # noqa: E402

TARGETS = (DROPLET, Z2JH)
TARGET_HELP = (
    "droplet (default): TLJH on one droplet; z2jh: Zero to JupyterHub's Helm chart on Kubernetes, "
    "for a class that outgrows one droplet (writes DIR/z2jh/)"
)


def main(argv: list[str] | None = None) -> int:
    """Run one verb; what it ends with said in one line, with the exit status of its kind (the cloud
    verbs say DigitalOcean's refusals themselves: cloud_verbs.at_digitalocean)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except SpecError as error:
        for problem in error.problems:
            print(problem.format(error.filename), file=sys.stderr)
        errors = sum(not p.warning for p in error.problems)
        print(f"{yamlsource.shown(error.filename)}: {errors} problem(s); nothing written", file=sys.stderr)
        return INVALID
    except UsageError as error:
        print(f"classimage: {error}", file=sys.stderr)
        return USAGE
    except (links.LinkError, workflows.WorkflowError, admins.AdminError, init.InitError) as error:
        print(f"classimage: {error}", file=sys.stderr)
        return USAGE
    except packer.PackerError as error:
        print(f"classimage: {error}", file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:
        if getattr(args, "verb", None) in ("up", "down", "backup", "restore"):
            print(
                "\nclassimage: interrupted; run the same command again: it finds what exists and finishes",
                file=sys.stderr,
            )
        return 130
    except Exception as error:  # a bug in classimage, not in the spec: say so, briefly
        if os.environ.get("CLASSIMAGE_DEBUG"):
            raise
        print(
            f"classimage: internal error: {type(error).__name__}: {error}\n"
            "please report it with the spec; CLASSIMAGE_DEBUG=1 shows the traceback",
            file=sys.stderr,
        )
        return INTERNAL


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program(), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"classimage {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        formatter = argparse.RawDescriptionHelpFormatter if verb.raw else argparse.HelpFormatter
        command = verbs.add_parser(verb.name, help=verb.help, description=verb.description, formatter_class=formatter)
        groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
        for option in verb.args:
            if option.group is not None and option.group not in groups:
                groups[option.group] = command.add_mutually_exclusive_group()
            where = command if option.group is None else groups[option.group]
            where.add_argument(*option.names, **option.options)
        command.set_defaults(handler=verb.handler)
    return parser


@dataclass(frozen=True)
class Arg:
    """One of a verb's arguments: argparse's add_argument(*names, **options)."""

    names: tuple[str, ...]
    options: dict[str, Any]
    group: str | None = None  # the arguments of one group exclude each other


def arg(*names: str, group: str | None = None, **options: Any) -> Arg:
    return Arg(names, options, group)


@dataclass(frozen=True)
class Verb:
    name: str
    handler: Callable[[argparse.Namespace], int]
    help: str
    args: tuple[Arg, ...]
    description: str | None = None
    raw: bool = False  # the description keeps its own line breaks


# Arguments several verbs take.
SPEC = arg("spec", metavar="SPEC", help="the course spec (YAML)")
DRY_RUN = arg("--dry-run", action="store_true", help="say what would change; change nothing")
TIMEOUT = arg(
    "--timeout", type=float, default=60, metavar="MINUTES", help="how long to follow provisioning (default 60)"
)

# The verbs, in the order `--help` lists them: what each takes, and the function that does it.
VERBS: tuple[Verb, ...] = (
    Verb(
        "init",
        run_init,
        raw=True,
        help="start a course repository: course.yaml, the workflows, a README, a .gitignore",
        description=init.__doc__,
        args=(
            arg("folder", metavar="DIR", nargs="?", default=".", help="the repository's folder (default: here)"),
            arg("--name", help="the course's name, e.g. 'Geology 101' (asked when not given)"),
            arg(
                "--admin",
                action="append",
                metavar="NAME",
                help="an instructor's hub user name (repeatable; asked when not given)",
            ),
            arg("--slug", help="the course's short name for files and droplets (default: made from --name)"),
            arg(
                "--students",
                type=int,
                metavar="N",
                help="how many students work at once, at the busiest (the droplet size is then one that holds them)",
            ),
            arg("--hostname", help="the hub's DNS name, for HTTPS (also names the hub in the README's links)"),
            arg("--email", help="with --hostname: the contact address Let's Encrypt uses"),
            arg("--content", action="append", metavar="URL", help="a git repository of course material (repeatable)"),
            arg(
                "--example",
                metavar="NAME",
                help=f"start course.yaml from a bundled example ({', '.join(init.examples())}) "
                "instead of the blank one",
            ),
        ),
    ),
    Verb(
        "validate",
        run_validate,
        help="check a course spec; writes nothing",
        args=(
            SPEC,
            arg("--target", choices=TARGETS, default=DROPLET, help=TARGET_HELP),
        ),
    ),
    Verb(
        "admin-password",
        run_admin_password,
        help="set an admin's password (only its hash is kept)",
        args=(
            arg("spec", metavar="SPEC", nargs="?", help="the course spec (YAML)"),
            arg("--repo", metavar="PATH", help="no spec: the course repository `render --repo` renders (with --admin)"),
            arg(
                "--admin",
                action="append",
                metavar="NAME",
                help="the admin (repeatable; default: every admin in hub.admins; "
                "with --repo, the admins render was given)",
            ),
            arg("--generate", action="store_true", help="make a strong password and print it once", group="how"),
            arg(
                "--stdin",
                action="store_true",
                help="read the password(s) from standard input, one per line",
                group="how",
            ),
        ),
    ),
    Verb(
        "render",
        run_render,
        help="write the user data (one-piece, bake, boot) and the Packer template",
        args=(
            arg("spec", metavar="SPEC", nargs="?", help="the course spec (YAML)"),
            arg("--repo", metavar="PATH", help="no spec: a course repository's binder files and the defaults"),
            arg(
                "--admin",
                action="append",
                metavar="NAME",
                help="with --repo: an admin's hub user name (repeatable; required)",
            ),
            arg(
                "--workflows",
                metavar="DIR",
                help="also write the GitHub workflows "
                f"({', '.join(n.removeprefix('classimage-') for n in workflows.NAMES)}; "
                f"with --target z2jh: {workflows.IMAGE_NAME.removeprefix('classimage-')}) "
                f"into DIR/{workflows.FOLDER}/; "
                "DIR is the course repository holding the spec",
            ),
            arg("--target", choices=TARGETS, default=DROPLET, help=TARGET_HELP),
            arg("--out", metavar="DIR", help="directory to write into (default: build/SLUG)", group="where"),
            arg(
                "--stdout",
                action="store_true",
                help="print the one-piece user data instead of writing files",
                group="where",
            ),
        ),
    ),
    Verb(
        "build",
        run_build,
        help="bake the course into a DigitalOcean snapshot with Packer (which must be installed)",
        description="Bake the course's software into a DigitalOcean snapshot: renders, then runs Packer "
        "(https://developer.hashicorp.com/packer/install; Debian: apt-get install packer), which must be "
        f"installed. Needs {packer.TOKEN} in the environment, except with --dry-run.",
        args=(
            SPEC,
            arg("--out", metavar="DIR", help="directory to render into (default: build/SLUG)"),
            arg("--dry-run", action="store_true", help="render and validate the template; build nothing"),
            arg(
                "--if-missing",
                action="store_true",
                help="build only if the course has no snapshot baked from this spec's software (asks DigitalOcean)",
            ),
        ),
    ),
    Verb(
        "up",
        run_up,
        help="make or update the class's server at DigitalOcean, and follow it to ready",
        args=(
            SPEC,
            DRY_RUN,
            TIMEOUT,
        ),
    ),
    Verb(
        "backup",
        run_backup,
        help="snapshot the class's data volume; keep the newest storage.keep_backups",
        args=(SPEC,),
    ),
    Verb(
        "restore",
        run_restore,
        help="bring the class back from a backup, on a new volume and droplet",
        args=(
            SPEC,
            arg(
                "--backup", required=True, metavar="ID", help="the backup's id or name (`classimage status` lists them)"
            ),
            DRY_RUN,
            arg(
                "--again",
                action="store_true",
                help="bring the backup back once more, though the class runs on a copy of it already (run again "
                "without it, an interrupted restore is finished)",
            ),
            TIMEOUT,
        ),
    ),
    Verb(
        "status",
        run_status,
        help="what the class has at DigitalOcean, how it is, and what it costs",
        args=(SPEC,),
    ),
    Verb(
        "down",
        run_down,
        help="destroy the class's droplet and firewall; keep its data and address",
        args=(
            SPEC,
            arg(
                "--delete-data",
                action="store_true",
                help="also delete the class's volume, its backups and its address (asks for the course slug)",
            ),
            arg("--yes", action="store_true", help="do not ask"),
        ),
    ),
    Verb(
        "links",
        run_links,
        help="print the links to share: nbgitpuller launch links and the hub's pages",
        args=(
            SPEC,
            arg("--hub", metavar="URL", help="the hub's address (default: https://HOSTNAME from the spec)"),
            arg("--json", action="store_true", help="print JSON"),
        ),
    ),
    Verb(
        "explain",
        run_explain,
        help="describe the spec's keys",
        args=(
            arg("key", nargs="?", metavar="KEY", help="e.g. hub.idle_timeout; all keys if left out"),
            arg("--markdown", action="store_true", help="every key as a Markdown table"),
        ),
    ),
)
