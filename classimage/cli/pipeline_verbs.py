"""The pipeline's verbs: init, validate, admin-password, render, links, explain. They turn a spec into
files on the instructor's machine and never load the cloud (build, which also renders, is a cloud
verb: it makes a snapshot at DigitalOcean)."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path

from classimage.cli.shared import OK, USAGE, Z2JH, UsageError, load_spec, program
from classimage.pipeline import (
    admins,
    artifacts,
    init,
    links,
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
from classimage.pipeline.files import write_atomically
from classimage.pipeline.model import Spec
from classimage.pipeline.problems import Problem, SpecError


def run_validate(args) -> int:
    loaded = load_spec(args.spec, warnings=True, target=args.target)
    if args.target == Z2JH:
        _z2jh_files(loaded, args.spec, admins.for_admins(loaded.spec.hub.admins, loaded.spec.course.slug))
        print(f"{yamlsource.shown(args.spec)}: valid for z2jh ({loaded.spec.course.slug}, spec {loaded.digest[:12]})")
        return OK
    hashes = admins.for_admins(loaded.spec.hub.admins, loaded.spec.course.slug)
    rendered(loaded, args.spec, hashes, volume=longest_volume(loaded.spec))
    print(f"{yamlsource.shown(args.spec)}: valid ({loaded.spec.course.slug}, spec {loaded.digest[:12]})")
    print(_capacity(loaded.spec))
    return OK


def rendered(
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


def longest_volume(course: Spec) -> str | None:
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


def render_into(args, loaded: spec.Loaded, filename: str, command: str | None = None) -> Path:
    files = rendered(loaded, filename, _admin_hashes(loaded, filename, command))
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


def _for_repo(args, admin: str) -> spec.Loaded:
    """The spec made for `--repo PATH` (a course repository without one) and its `--admin` names
    (`admin`: what the error says an admin is, when none is given)."""
    if args.spec:
        raise UsageError("give a SPEC or --repo, not both (a spec names its repository as environment.from_repo)")
    if not args.admin:
        raise UsageError(f"--repo needs --admin NAME: {admin}")
    return spec.for_repo(Path(args.repo), args.admin)


def run_render(args) -> int:
    if args.repo:
        loaded = _for_repo(
            args,
            "the hub user name you will sign in with (an admin can approve students and has sudo on the "
            "server, so it is never a guessable default)",
        )
        for warning in loaded.warnings:
            print(warning.format(args.repo), file=sys.stderr)
        course = loaded.spec.course
        print(
            f"no spec: course {course.name!r} ({course.slug}), admins {', '.join(loaded.spec.hub.admins)}; "
            f"write a spec to choose these (`{program()} init` starts one)",
            file=sys.stderr,
        )
    elif args.spec:
        loaded = load_spec(args.spec, warnings=True, target=args.target)
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
        text = rendered(loaded, filename, _admin_hashes(loaded, filename, command))[artifacts.ONE_PIECE]
        sys.stdout.write(text)
        print(f"user data: {_kib(len(text.encode()))} of {_kib(userdata.LIMIT)}", file=sys.stderr)
        return OK
    render_into(args, loaded, args.spec or args.repo, command)
    if flows:
        for name in _write(Path(args.workflows), flows):
            print(f"wrote {name}", file=sys.stderr)
    cost(loaded.spec, None)
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


def cost(course: Spec, api_sizes: list | None) -> None:
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


def run_admin_password(args) -> int:
    if args.repo:
        loaded, source = _for_repo(args, "the admin(s) you give `render --repo`"), args.repo
    elif args.spec:
        loaded, source = load_spec(args.spec), args.spec
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


def run_init(args) -> int:
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


def run_links(args) -> int:
    loaded = load_spec(args.spec)
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


def run_explain(args) -> int:
    if args.markdown:
        sys.stdout.write(reference.markdown())
        return OK
    text, found = reference.explain(args.key)
    (sys.stdout if found else sys.stderr).write(text)
    return OK if found else USAGE


def _kib(size: int) -> str:
    return f"{size / 1024:.1f} KiB"
