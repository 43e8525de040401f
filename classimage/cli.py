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
import getpass
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# jsonschema imports every optional format checker it finds; rfc3987_syntax, when installed (Jupyter
# packages pull it in), compiles a grammar at import: 0.7 s on every command, for the `iri` format
# no classimage schema uses. The command line is our own process, so it declines that import.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

from classimage import __version__  # noqa: E402 (after the import declined above)
from classimage.cloud import digitalocean  # noqa: E402
from classimage.pipeline import (  # noqa: E402
    admins,
    artifacts,
    checks,
    init,
    links,
    packer,
    plan,
    pricing,
    reference,
    sizing,
    spec,
    templating,
    userdata,
    workflows,
    yamlsource,
)
from classimage.pipeline.files import write_atomically  # noqa: E402
from classimage.pipeline.model import Spec  # noqa: E402
from classimage.pipeline.problems import Problem, SpecError  # noqa: E402

OK, INVALID, USAGE, FAILED, CLOUD, INTERNAL = 0, 1, 2, 3, 4, 70
DROPLET, Z2JH = "droplet", "z2jh"
TARGETS = (DROPLET, Z2JH)
TARGET_HELP = (
    "droplet (default): TLJH on one droplet; z2jh: Zero to JupyterHub's Helm chart on Kubernetes, "
    "for a class that outgrows one droplet (writes DIR/z2jh/)"
)


class UsageError(Exception):
    pass


def program() -> str:
    """How classimage was run, for the commands it shows: the installed `classimage`, or `python -m
    classimage` (also what a test calling main() is shown)."""
    return "classimage" if Path(sys.argv[0]).name == "classimage" else "python -m classimage"


def main(argv: list[str] | None = None) -> int:
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
    except digitalocean.CloudError as error:
        print(f"classimage: {error}", file=sys.stderr)
        return CLOUD
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


def _load(path: str, warnings: bool = False, target: str = DROPLET) -> spec.Loaded:
    """The spec at `path`; its warnings printed when `warnings` (the verbs that check or render
    it say them; the others, run on a spec that was, do not repeat them), those about a droplet
    only for the droplet target."""
    try:
        loaded = spec.load_file(path)
    except yamlsource.NotAFile as error:
        raise UsageError(f"cannot read {yamlsource.shown(path)}: {error} (give the course spec's YAML file)") from None
    except OSError as error:
        raise UsageError(f"cannot read {yamlsource.shown(path)}: {error.strerror or error}") from None
    for warning in loaded.warnings if warnings else ():
        if target == DROPLET or warning.path not in checks.DROPLET_ONLY:
            print(warning.format(path), file=sys.stderr)
    return loaded


def _validate(args) -> int:
    loaded = _load(args.spec, warnings=True, target=args.target)
    if args.target == Z2JH:
        _z2jh_files(loaded, args.spec, admins.for_admins(loaded.spec.hub.admins, loaded.spec.course.slug))
        print(f"{yamlsource.shown(args.spec)}: valid for z2jh ({loaded.spec.course.slug}, spec {loaded.digest[:12]})")
        return OK
    hashes = admins.for_admins(loaded.spec.hub.admins, loaded.spec.course.slug)
    _artifacts(loaded, args.spec, hashes, volume=_longest_volume(loaded.spec))
    print(f"{yamlsource.shown(args.spec)}: valid ({loaded.spec.course.slug}, spec {loaded.digest[:12]})")
    print(_capacity(loaded.spec))
    return OK


def _artifacts(
    loaded: spec.Loaded,
    filename: str,
    hashes: dict[str, str | None],
    status_token_sha256: str | None = None,
    volume: str | None = None,
) -> dict[str, str]:
    """Everything render writes, in memory: what validate also decides (so a spec that validates
    renders), with the one limit only rendering can tell (the user data's size) as a problem."""
    try:
        return artifacts.render(loaded, hashes, status_token_sha256, volume)
    except userdata.TooLarge as error:
        where = ("environment",)
        raise SpecError(
            filename,
            [
                Problem(
                    loaded.line(where, key=True),
                    "environment",
                    str(error),
                    "list fewer packages: a few that depend on the rest install the same",
                )
            ],
        ) from None


def _longest_volume(course: Spec) -> str | None:
    """The longest name of the class's volume the cloud verbs may put in the user data (a restored
    one's): what validate renders with, so that a spec that validates also fits with its volume."""
    if course.storage.type in ("auto", "volume"):
        return plan.restored_volume_name(course.course.slug, "0" * 8 + "-" + "0" * 6)
    return None


def _password_command(spec_path: str | None, repo: str | None = None, names: list[str] | None = None) -> str:
    """The command that sets the admins' passwords for this spec, or for a repository without one."""
    if repo is not None:
        words = ["admin-password", "--repo", repo] + [word for name in names or [] for word in ("--admin", name)]
    else:
        words = ["admin-password", spec_path or "SPEC"]
    return f"{program()} {templating.sh(words)}"


def _admin_hashes(loaded: spec.Loaded, filename: str, command: str | None = None) -> dict[str, str | None]:
    """The admins' password hashes, with a warning for each admin who has none yet (`command`: the
    one that sets them; by default for the spec `filename`)."""
    hashes = admins.for_admins(loaded.spec.hub.admins, loaded.spec.course.slug)
    for index, name in enumerate(loaded.spec.hub.admins):
        if hashes[name] is None:
            print(
                Problem(
                    loaded.line(("hub", "admins", index)),
                    f"hub.admins[{index}]",
                    f"{name!r} has no password yet: the account is reserved, so "
                    f"no one can claim it, and no one can sign in as {name} either",
                    f"run `{command or _password_command(filename)}`, then render again",
                    warning=True,
                ).format(filename),
                file=sys.stderr,
            )
    return hashes


def _render_into(args, loaded: spec.Loaded, filename: str, command: str | None = None) -> Path:
    files = _artifacts(loaded, filename, _admin_hashes(loaded, filename, command))
    out = Path(args.out) if args.out else Path("build") / loaded.spec.course.slug
    _keep_out_of_git(out)
    _write(out, files, 0o600)  # the user data carries the admins' password hashes
    for stage, name in artifacts.USER_DATA.items():
        size = len(files[name].encode())
        print(
            f"wrote {out / name} ({_kib(size)} of {_kib(userdata.LIMIT)}; {artifacts.PURPOSE[stage]})", file=sys.stderr
        )
    print(f"wrote {out / artifacts.PACKER}/ (the Packer template that bakes the snapshot)", file=sys.stderr)
    return out


def _render(args) -> int:
    if args.repo:
        if args.spec:
            raise UsageError("give a SPEC or --repo, not both (a spec names its repository as environment.from_repo)")
        if not args.admin:
            raise UsageError(
                "--repo needs --admin NAME: the hub user name you will sign in with (an admin "
                "can approve students and has sudo on the server, so it is never a guessable default)"
            )
        loaded = spec.for_repo(Path(args.repo), args.admin)
        for warning in loaded.warnings:
            print(warning.format(args.repo), file=sys.stderr)
        course = loaded.spec.course
        print(
            f"no spec: course {course.name!r} ({course.slug}), admins {', '.join(loaded.spec.hub.admins)}; "
            f"write a spec to choose these (`{program()} init` starts one)",
            file=sys.stderr,
        )
    elif args.spec:
        loaded = _load(args.spec, warnings=True, target=args.target)
    else:
        raise UsageError("render needs a SPEC, or --repo PATH for a course repository without one")
    flows = {}
    if args.workflows:
        if not args.spec:
            raise UsageError("--workflows needs a SPEC in the course repository: the workflows validate and build it")
        if args.target == Z2JH:
            flows = workflows.image(loaded.spec, Path(args.spec), Path(args.workflows))
        else:
            flows = workflows.render(loaded.spec, Path(args.spec), Path(args.workflows))
    if args.target == Z2JH:
        return _render_z2jh(args, loaded, args.spec or args.repo, flows)
    command = _password_command(args.spec, args.repo, args.admin) if args.repo else None
    if args.stdout:
        filename = args.spec or args.repo
        text = _artifacts(loaded, filename, _admin_hashes(loaded, filename, command))[artifacts.ONE_PIECE]
        sys.stdout.write(text)
        print(f"user data: {_kib(len(text.encode()))} of {_kib(userdata.LIMIT)}", file=sys.stderr)
        return OK
    _render_into(args, loaded, args.spec or args.repo, command)
    if flows:
        for name in _write(Path(args.workflows), flows):
            print(f"wrote {name}", file=sys.stderr)
    _cost(loaded.spec, None)
    print(_capacity(loaded.spec), file=sys.stderr)
    print(
        "next: paste user-data.yaml into DigitalOcean's droplet creation, Advanced options > "
        f"Add initialization scripts; or let `{program()} up` make the droplet, or bake a snapshot with "
        f"`{program()} build` (see README.md)",
        file=sys.stderr,
    )
    return OK


def _capacity(course: Spec) -> str:
    return sizing.capacity(course.droplet.size, course.hub.memory_limit, course.course.students)


def _cost(course: Spec, api_sizes: list | None) -> None:
    """What the spec's class costs a month, item by item, on standard error (api_sizes:
    DigitalOcean's answer to GET /v2/sizes, when there is a token to ask with)."""
    items = pricing.plan(
        course.droplet.size, course.storage.type, course.storage.size_gigabytes, course.storage.keep_backups, api_sizes
    )
    source = "droplet sizes priced by DigitalOcean's API" if api_sizes else pricing.LIST_PRICES
    made = "made by `up`" if len(items) > 1 else "its droplet"
    print(f"what the class costs a month at DigitalOcean, {made} ({source}):", file=sys.stderr)
    for line in pricing.lines(items):
        print(line, file=sys.stderr)
    if len(items) > 1 and api_sizes is None:
        print(
            "  (pasted into the control panel: the droplet, and a volume if you attach one; "
            f"`{program()} up --dry-run` prices it with DigitalOcean's API)",
            file=sys.stderr,
        )


def _z2jh_files(loaded: spec.Loaded, filename: str, hashes: dict[str, str | None]) -> dict[str, str]:
    """The z2jh target's files, after its own checks (refusals reported as validation problems)."""
    from classimage.pipeline import z2jh  # the z2jh target's own: not loaded for a droplet

    for warning in z2jh.check(loaded, filename):
        print(warning.format(filename), file=sys.stderr)
    return z2jh.render(loaded, hashes)


def _render_z2jh(args, loaded: spec.Loaded, filename: str, flows: dict[str, str]) -> int:
    from classimage.pipeline import z2jh

    files = _z2jh_files(loaded, filename, _admin_hashes(loaded, filename))
    if args.stdout:
        sys.stdout.write(files[z2jh.VALUES])
        return OK
    out = Path(args.out) if args.out else Path("build") / loaded.spec.course.slug
    _keep_out_of_git(out)
    _write(out, files, 0o600)  # the values carry the admins' password hashes
    print(f"wrote {out / z2jh.VALUES} (the values of Zero to JupyterHub's chart {z2jh.CHART})", file=sys.stderr)
    print(f"wrote {out / z2jh.IMAGE}/ (repo2docker's files for the students' image)", file=sys.stderr)
    for name in _write(Path(args.workflows), flows) if flows else []:
        print(f"wrote {name}", file=sys.stderr)
    command = " ".join(z2jh.helm_command(loaded.spec, str(out / z2jh.VALUES)))
    print(f"next: build the image (the classimage-image workflow), then `{command}` (see README.md)", file=sys.stderr)
    return OK


def _build(args) -> int:
    from classimage.cloud import deploy  # the cloud verbs' own: not loaded to render
    from classimage.cloud.found import Names

    loaded = _load(args.spec, warnings=True)
    packer.find()  # before anything else: the one thing the instructor must install
    if not args.dry_run and not os.environ.get(packer.TOKEN):
        raise UsageError(
            f"no DigitalOcean API token: set {packer.TOKEN} to a personal access token with write scope "
            "(DigitalOcean control panel > API > Generate New Token), e.g. `export "
            f"{packer.TOKEN}=dop_v1_...`; it is read from the environment only, never written to a file. "
            "Nothing was built (--dry-run validates without one)"
        )
    if args.if_missing and not args.dry_run:
        names, api, droplet = Names(loaded.spec.course.slug), _account(), loaded.spec.droplet
        size = next((s for s in api.sizes() if s["slug"] == droplet.size), {})
        baked = deploy.choose_snapshot(  # one DigitalOcean can make this spec's droplet from
            sorted(api.droplet_snapshots(), key=lambda s: s["created_at"], reverse=True),
            names,
            plan.bake_digest(loaded.spec),
            droplet.region,
            size.get("disk"),
        )
        if baked is not None:
            print(
                f"snapshot {baked['name']} ({baked['id']}) holds this spec's software already: nothing to build",
                file=sys.stderr,
            )
            return OK
    out = _render_into(args, loaded, args.spec)
    folder = out / artifacts.PACKER
    what = packer.validate(folder, packer=packer.find())
    print(f"packer validate: {what} is valid", file=sys.stderr)
    if args.dry_run:
        return OK
    print(f"packer build {what}: a build droplet bakes the course (5 to 15 minutes)...", file=sys.stderr)
    result = packer.build(what, packer=packer.find(), show=lambda line: print(f"  {line}", file=sys.stderr))
    if result.returncode != 0:
        raise packer.PackerError(
            f"packer build failed (exit {result.returncode}); last error: "
            f"{result.errors[-1] if result.errors else 'see above'}"
        )
    for snapshot in result.artifacts.values():
        print(snapshot)
        print(
            f"snapshot {snapshot} is ready: create droplets from it with {out / artifacts.USER_DATA[plan.BOOT]} "
            "as their user data",
            file=sys.stderr,
        )
    return OK


def _admin_password(args) -> int:
    if args.repo:
        if args.spec:
            raise UsageError("give a SPEC or --repo, not both (a spec names its repository as environment.from_repo)")
        if not args.admin:
            raise UsageError("--repo needs --admin NAME: the admin(s) you give `render --repo`")
        loaded, source = spec.for_repo(Path(args.repo), args.admin), args.repo
    elif args.spec:
        loaded, source = _load(args.spec), args.spec
    else:
        raise UsageError("admin-password needs a SPEC, or --repo PATH --admin NAME for a repository without one")
    course = loaded.spec
    names = args.admin or list(course.hub.admins)
    unknown = [name for name in names if name not in course.hub.admins]
    if unknown:
        raise UsageError(f"{', '.join(unknown)} not in hub.admins of {source} ({', '.join(course.hub.admins)})")
    if not (args.generate or args.stdin or sys.stdin.isatty()):
        raise UsageError("no terminal to ask for a password: use --generate, or --stdin with one password per line")
    lines = sys.stdin.read().splitlines() if args.stdin else []
    if args.stdin and len(lines) != len(names):
        raise UsageError(f"--stdin needs {len(names)} line(s), one password per admin ({', '.join(names)})")
    hashes, shown = {}, []
    for number, name in enumerate(names):
        if args.generate:
            password = admins.generate()
            shown.append((name, password))
        elif args.stdin:
            password = lines[number]
        else:
            password = _ask_password(name, course.hub.auth.min_password_length)
        weak = admins.weakness(password, name, course.hub.auth.min_password_length)
        if weak:
            raise UsageError(
                f"that password for {name} will not do: {weak}; nothing was changed (--generate makes a strong one)"
            )
        hashes[name] = admins.hash_password(password)
    path = admins.save(course.course.slug, hashes)
    for name, password in shown:
        print(f"{name}: {password}")
    if shown:
        print("shown once: keep it in your password manager (only its hash is stored)", file=sys.stderr)
    print(
        f"stored the hash of each password in {path} (not in the course repository). Render again: "
        "the user data carries the hashes, and a droplet takes them when it is created. For a workflow, "
        f"put that file's text in the secret {admins.ENVIRONMENT}.",
        file=sys.stderr,
    )
    return OK


TRIES = 3  # chances to type an admin's password the same twice, and strong enough


def _ask_password(name: str, minimum: int) -> str:
    """An admin's password, typed twice at the terminal: a slip or a weak one is said, and asked again."""
    for _ in range(TRIES):
        password = getpass.getpass(f"password for {name}: ")
        weak = admins.weakness(password, name, minimum)
        if weak:
            print(f"that will not do: {weak}; try another (--generate makes a strong one)", file=sys.stderr)
        elif getpass.getpass(f"the same again, for {name}: ") != password:
            print("the two differ; once more", file=sys.stderr)
        else:
            return password
    raise UsageError(f"no password for {name} after {TRIES} tries; nothing was changed")


def _init(args) -> int:
    folder = Path(args.folder)
    init.refuse_existing(folder)  # before asking anything
    asking = sys.stdin.isatty()
    name, names = args.name, list(args.admin or [])
    if not (name and names) and not asking:
        raise UsageError("give --name and --admin: there is no terminal to ask them at")
    questions = {
        "name": "the course's name, as people say it (e.g. Geology 101): ",
        "admin": "your hub user name, as the class's admin (e.g. alice): ",
    }

    def ask(question: str) -> str:
        try:
            return input(questions[question]).strip()
        except EOFError:
            raise UsageError(f"no answer for --{question}; nothing was written") from None

    for _ in range(TRIES):
        name = name or ask("name")
        names = names or [ask("admin")]
        answers = init.Answers(
            name=name,
            admins=tuple(names),
            slug=args.slug,
            students=args.students,
            hostname=args.hostname,
            email=args.email,
            content=tuple(args.content or ()),
            example=args.example,
        )
        try:
            made = init.files(answers, folder)
            break
        except init.InitError as error:
            if not asking or error.answer not in questions:
                raise
            print(f"classimage: {error}; once more", file=sys.stderr)
            name, names = (None, names) if error.answer == "name" else (name, [])
    else:
        raise UsageError(f"no course after {TRIES} tries; nothing was written")
    written, kept = init.write(folder, made)
    print(f"wrote into {folder}: {', '.join(written)}", file=sys.stderr)
    if kept:
        print(
            f"kept {', '.join(kept)} as it was; `{program()} links {init.SPEC}` prints the course's launch badges",
            file=sys.stderr,
        )
    print("\n".join(init.next_steps(folder, program())))
    return OK


def _echo(message: str) -> None:
    print(message, flush=True)


def _account() -> digitalocean.DigitalOcean:
    """A session with DigitalOcean, or a usage error saying what is missing (a token, the client)."""
    if not os.environ.get(digitalocean.TOKEN, "").strip():
        raise UsageError(
            f"no DigitalOcean API token: set {digitalocean.TOKEN} to a personal access token with read "
            "and write scope (control panel > API > Generate New Token), e.g. `export "
            f"{digitalocean.TOKEN}=dop_v1_...`; it is read from the environment only, never written to "
            "a file. Nothing was changed"
        )
    try:
        return digitalocean.DigitalOcean(log=_echo)
    except digitalocean.CloudError as error:
        raise UsageError(str(error)) from None


def _up(args) -> int:
    return _deploy(args, _load(args.spec))


def _restore(args) -> int:
    loaded = _load(args.spec)
    if loaded.spec.storage.type == "none":
        raise UsageError("storage.type is none: the class keeps no volume, so there is no backup to restore")
    return _deploy(args, loaded, args.backup)


def _deploy(args, loaded: spec.Loaded, backup: str | None = None) -> int:
    """`up`, or `restore` (`backup`: the id or name of the backup the class comes back from)."""
    from classimage.cloud import deploy, upkeep  # the cloud verbs' own: not loaded to render
    from classimage.cloud.found import status_token

    course = loaded.spec
    hashes = admins.for_admins(course.hub.admins, course.course.slug)
    missing = [name for name, hashed in hashes.items() if hashed is None]
    if missing:
        raise UsageError(
            f"no password for {', '.join(missing)} yet: run `python -m classimage admin-password "
            f"{args.spec}` first (the class's server needs a way for you to sign in)"
        )
    api = _account()
    token = hashlib.sha256(status_token(api.token, course.course.slug, loaded.digest).encode()).hexdigest()
    _artifacts(loaded, args.spec, hashes, token, _longest_volume(course))  # stops here, before anything is made
    _cost(course, api.sizes())  # before anything is spent

    def render(volume: str | None) -> dict[str, str]:
        return _artifacts(loaded, args.spec, hashes, token, volume)

    started = time.monotonic()
    up = deploy.Up(loaded, api, render, _echo, timeout=args.timeout * 60, dry_run=args.dry_run)
    outcome = up.run(upkeep.find_backup(loaded, api, backup) if backup else None, getattr(args, "again", False))
    if args.dry_run:
        print(f"(dry run: {api.requests} requests to DigitalOcean, none changing anything)")
        return OK
    print(
        f"done in {time.monotonic() - started:.0f} s ({api.requests} requests to DigitalOcean, "
        f"{api.changes} changing something)"
        + (f"; students could not reach the hub for {outcome.downtime:.0f} s" if outcome.downtime else "")
        + (
            f" (the new droplet was ready but for the class's data {outcome.prepared:.0f} s after it was made, "
            "while the class still ran)"
            if outcome.prepared
            else ""
        )
    )
    hub = f"https://{course.https.hostname}" if course.https.hostname else f"http://{outcome.address}"
    print(f"\nthe class is at {hub}")
    print(
        f"next: sign in at {hub}/hub/login as {course.hub.admins[0]} with the password you set; approve "
        f"students at {hub}/hub/authorize"
    )
    found = links.everything(course, hub)
    for item in found["content"]:
        print(f"launch link for {item['repo']}: {item['link']}")
    return OK


def _backup(args) -> int:
    from classimage.cloud import upkeep  # the cloud verbs' own: not loaded to render

    loaded = _load(args.spec)
    started = time.monotonic()
    api = _account()
    made = upkeep.backup(loaded, api, _echo)
    print(
        f"done in {time.monotonic() - started:.0f} s: restore it with `python -m classimage restore {args.spec} "
        f"--backup {made['id']}`"
    )
    return OK


def _status(args) -> int:
    from classimage.cloud import upkeep  # the cloud verbs' own: not loaded to render

    loaded = _load(args.spec)
    found = upkeep.status(loaded, _account(), _echo)
    return OK if found.droplets else FAILED


def _down(args) -> int:
    from classimage.cloud import upkeep  # the cloud verbs' own: not loaded to render

    loaded = _load(args.spec)
    slug = loaded.spec.course.slug
    if args.delete_data and not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(
                "--delete-data deletes the class's volume (every student's work), its backups and "
                "its address: add --yes to confirm without a terminal"
            )
        typed = input(
            f"this deletes every student's work in {slug}, its backups and its address; type the course's "
            "slug to confirm: "
        )
        if typed.strip() != slug:
            raise UsageError("that is not the course's slug; nothing was deleted")
    upkeep.down(loaded, _account(), _echo, delete_data=args.delete_data)
    return OK


# What render writes beside its files, so that a `git add .` in a course repository never takes them.
GITIGNORE = "# Written by classimage: what render writes holds the admins' password hashes; keep it out of git.\n*\n"


def _keep_out_of_git(out: Path) -> None:
    """Make `out` a folder git ignores (its own .gitignore), or refuse one that cannot be: the top of
    a repository, or a folder with a .gitignore of someone else's."""
    if (out / ".git").exists():
        raise UsageError(
            f"{out} is the top of a git repository: render there and `git add .` would commit the admins' "
            "password hashes; choose a folder of its own (--out build/SLUG, the default)"
        )
    ignore = out / ".gitignore"
    try:
        theirs = ignore.is_symlink() or (
            ignore.exists() and yamlsource.read_file(ignore, len(GITIGNORE)).decode("utf-8") != GITIGNORE
        )
        if theirs:
            raise UsageError(
                f"{ignore} is not classimage's: render writes its own there, so that git never takes the admins' "
                "password hashes; choose a folder of its own (--out build/SLUG, the default)"
            )
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {ignore}: {error} (choose another --out)") from None
    _write(out, {".gitignore": GITIGNORE})


def _write(directory: Path, files: dict[str, str], mode: int = 0o644) -> list[Path]:
    """Write the files (names may have folders): each lands under its final name only when complete."""
    try:
        written = []
        for name, content in files.items():
            target = directory / name
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(target, content, mode)
            written.append(target)
        return written
    except OSError as error:
        raise UsageError(f"cannot write to {directory}: {error.strerror or error} (choose another --out)") from None


def _links(args) -> int:
    loaded = _load(args.spec)
    found = links.everything(loaded.spec, links.hub_url(loaded.spec, args.hub))
    if args.json:
        print(json.dumps(found, indent=2, ensure_ascii=False))
        return OK
    print(f"hub: {found['hub']}")
    for name, url in found["pages"].items():
        print(f"  {name + ':':<17} {url}")
    if not found["content"]:
        print("\n(no content repositories in the spec: add them under `content:`)")
    for item in found["content"]:
        detail = ", ".join(
            x
            for x in (
                f"branch {item['branch']}" if item["branch"] else "",
                f"opens {item['open']}" if item["open"] else "",
            )
            if x
        )
        print(f"\n{item['repo']}" + (f" ({detail})" if detail else ""))
        print(f"  link:     {item['link']}")
        print(f"  markdown: {item['markdown']}")
        print(f"  html:     {item['html']}")
    return OK


def _explain(args) -> int:
    if args.markdown:
        sys.stdout.write(reference.markdown())
        return OK
    text, found = reference.explain(args.key)
    (sys.stdout if found else sys.stderr).write(text)
    return OK if found else USAGE


def _kib(size: int) -> str:
    return f"{size / 1024:.1f} KiB"


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
        _init,
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
        _validate,
        help="check a course spec; writes nothing",
        args=(
            SPEC,
            arg("--target", choices=TARGETS, default=DROPLET, help=TARGET_HELP),
        ),
    ),
    Verb(
        "admin-password",
        _admin_password,
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
        _render,
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
        _build,
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
        _up,
        help="make or update the class's server at DigitalOcean, and follow it to ready",
        args=(
            SPEC,
            DRY_RUN,
            TIMEOUT,
        ),
    ),
    Verb(
        "backup",
        _backup,
        help="snapshot the class's data volume; keep the newest storage.keep_backups",
        args=(SPEC,),
    ),
    Verb(
        "restore",
        _restore,
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
        _status,
        help="what the class has at DigitalOcean, how it is, and what it costs",
        args=(SPEC,),
    ),
    Verb(
        "down",
        _down,
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
        _links,
        help="print the links to share: nbgitpuller launch links and the hub's pages",
        args=(
            SPEC,
            arg("--hub", metavar="URL", help="the hub's address (default: https://HOSTNAME from the spec)"),
            arg("--json", action="store_true", help="print JSON"),
        ),
    ),
    Verb(
        "explain",
        _explain,
        help="describe the spec's keys",
        args=(
            arg("key", nargs="?", metavar="KEY", help="e.g. hub.idle_timeout; all keys if left out"),
            arg("--markdown", action="store_true", help="every key as a Markdown table"),
        ),
    ),
)
