"""The cloud verbs: build, up, restore, backup, status, down. They take the pipeline verbs' artifacts
to DigitalOcean; the cloud's modules (and its client, pydo) load only when one of them runs, so that
the pipeline's verbs never load them."""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from classimage.cli.pipeline_verbs import cost, longest_volume, render_into, rendered
from classimage.cli.shared import CLOUD, FAILED, OK, UsageError, load_spec
from classimage.pipeline import admins, artifacts, links, packer, plan, spec

if TYPE_CHECKING:
    from classimage.cloud import digitalocean


def at_digitalocean(verb: Callable[..., int]) -> Callable[..., int]:
    """A cloud verb: DigitalOcean's refusal ends it with its own exit status (caught here, where the
    cloud is loaded, rather than in main, which then would load it for every verb)."""

    @functools.wraps(verb)
    def run(args) -> int:
        from classimage.cloud import digitalocean

        try:
            return verb(args)
        except digitalocean.CloudError as error:
            print(f"classimage: {error}", file=sys.stderr)
            return CLOUD

    return run


@at_digitalocean
def run_build(args) -> int:
    from classimage.cloud import deploy  # the cloud verbs' own: not loaded to render
    from classimage.cloud.found import Names

    loaded = load_spec(args.spec, warnings=True)
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
    out = render_into(args, loaded, args.spec)
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


def _echo(message: str) -> None:
    print(message, flush=True)


def _account() -> digitalocean.DigitalOcean:
    """A session with DigitalOcean, or a usage error saying what is missing (a token, the client)."""
    from classimage.cloud import digitalocean

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


@at_digitalocean
def run_up(args) -> int:
    return _deploy(args, load_spec(args.spec))


@at_digitalocean
def run_restore(args) -> int:
    loaded = load_spec(args.spec)
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
    rendered(loaded, args.spec, hashes, token, longest_volume(course))  # stops here, before anything is made
    cost(course, api.sizes())  # before anything is spent

    def render(volume: str | None) -> dict[str, str]:
        return rendered(loaded, args.spec, hashes, token, volume)

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


@at_digitalocean
def run_backup(args) -> int:
    from classimage.cloud import upkeep  # the cloud verbs' own: not loaded to render

    loaded = load_spec(args.spec)
    started = time.monotonic()
    api = _account()
    made = upkeep.backup(loaded, api, _echo)
    print(
        f"done in {time.monotonic() - started:.0f} s: restore it with `python -m classimage restore {args.spec} "
        f"--backup {made['id']}`"
    )
    return OK


@at_digitalocean
def run_status(args) -> int:
    from classimage.cloud import upkeep  # the cloud verbs' own: not loaded to render

    loaded = load_spec(args.spec)
    found = upkeep.status(loaded, _account(), _echo)
    return OK if found.droplets else FAILED


@at_digitalocean
def run_down(args) -> int:
    from classimage.cloud import upkeep  # the cloud verbs' own: not loaded to render

    loaded = load_spec(args.spec)
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
