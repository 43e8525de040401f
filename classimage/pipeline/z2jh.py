"""The course as a Zero to JupyterHub deployment on Kubernetes, for a class that outgrows one droplet:
the values of Z2JH's Helm chart (pinned, as TLJH is), the course's environment as repo2docker files
for its container image, and what becomes of every spec key there. Spec in, text out.

The hub is the chart's own (JupyterHub 5.5 with KubeSpawner); classimage writes values only, never a
Kubernetes manifest. What the droplet's hub guarantees is kept, by the same code: the admins' accounts
exist before the hub serves anything (classimage's hubaccounts.py), and nobody else can ever hold an
admin's name (hubguards.py), both mounted into the hub pod with the chart's `hub.extraFiles` and run
from `hub.extraConfig`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

import yaml

from classimage import __version__
from classimage.pipeline import links, shipping, templating, tljh, units
from classimage.pipeline.model import Spec
from classimage.pipeline.problems import Problem, SpecError, short
from classimage.pipeline.spec import Loaded
from classimage.pipeline.yamlsource import format_path

CHART = "4.4.0"  # Zero to JupyterHub's chart release; its hub image runs JupyterHub 5.5.0
CHART_REPOSITORY = "https://hub.jupyter.org/helm-chart/"
VALUES = "z2jh/values.yaml"
IMAGE = "z2jh/image"  # repo2docker's files for the students' image, built by the image workflow
# Where hub.extraFiles puts classimage's files in the hub pod (beside the chart's own config).
FOLDER = "/usr/local/etc/jupyterhub/classimage"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
# repo2docker, as the image workflow installs it into the repo2docker action (the tests run it too).
REPO2DOCKER = "jupyter-repo2docker==2026.4.0"
# The droplet's Python when the spec names none: TLJH 2.0.0 installs Miniforge 24.7.1, Python 3.12
# (TLJH's changelog), where repo2docker would take its own default.
DROPLET_PYTHON = "3.12"
# TLJH puts nbgitpuller in every droplet's user environment (requirements-user-env-extras.txt);
# repo2docker's base environment has the rest of TLJH's extras (JupyterLab, notebook, widgets).
NBGITPULLER = "nbgitpuller>=1.2.1,<2"
# Names that TLJH maps one-to-one onto Unix users (longer ones are shortened with a hash); the
# z2jh hub keeps the same rule, so a student's account can move between a droplet and the cluster.
# The schema's rule, as the droplet's hub applies it (`\Z`: Python's `$` lets a final line break in).
USERNAME_PATTERN = tljh.username_pattern()
DEFAULT_URL = {"jupyterlab": "/lab", "classic": "/tree"}


@dataclass(frozen=True)
class Key:
    """What one spec key becomes for this target: `where` it lands, or why it has no meaning here."""

    # "values", "image", "workflow", "commands": used there. "droplet": the droplet's own, not used
    # here (a warning when set). "refused": an error when set (problems() says why).
    kind: str
    where: str


def _values(where: str) -> Key:
    return Key("values", where)


def _droplet(why: str) -> Key:
    return Key("droplet", why)


AUTH = "hub.config.Authenticator, hub.config.NativeAuthenticator or FirstUseAuthenticator"
# Every key of the spec (a test holds this table to the schema). Values that cannot be honoured are
# refused by problems() below, whatever their kind here.
KEYS: dict[str, Key] = {
    "course": Key("commands", "the course"),
    "course.name": Key("commands", "the values' header and the image workflow's name"),
    "course.slug": Key("commands", "the Helm release and namespace in the commands render prints"),
    "course.students": _droplet("it sizes a droplet; the cluster adds nodes as students' servers start"),
    "hub": Key("values", "the hub"),
    "hub.admins": _values("hub.extraConfig: admin_users and the admins' accounts (hub.extraFiles' programs)"),
    "hub.default_app": _values("singleuser.defaultUrl"),
    "hub.idle_timeout": _values("cull.enabled, cull.timeout"),
    "hub.memory_limit": _values("singleuser.memory.limit"),
    "hub.cpu_limit": _values("singleuser.cpu.limit"),
    "hub.auth": _values(AUTH),
    "hub.auth.method": _values("hub.config.JupyterHub.authenticator_class (replaced in hub.extraConfig)"),
    "hub.auth.ask_email": _values("hub.config.NativeAuthenticator.ask_email_on_signup"),
    "hub.auth.min_password_length": _values(AUTH + " (minimum password length)"),
    "hub.auth.lockout": _values("hub.config.NativeAuthenticator"),
    "hub.auth.lockout.failed_logins": _values("hub.config.NativeAuthenticator.allowed_failed_logins"),
    "hub.auth.lockout.duration": _values("hub.config.NativeAuthenticator.seconds_before_next_try"),
    "hub.auth.allowed_users": _values("hub.config.Authenticator.allowed_users"),
    "environment": Key("image", "the image's files"),
    "environment.apt": Key("image", "apt.txt"),
    "environment.conda": Key("image", "environment.yml"),
    "environment.conda.channels": Key("image", "environment.yml channels"),
    "environment.conda.packages": Key("image", "environment.yml dependencies"),
    "environment.pip": Key("image", "environment.yml dependencies' pip list"),
    "environment.python": Key("image", "environment.yml python=X.Y"),
    "environment.post_build": Key("image", "postBuild"),
    "environment.from_repo": Key("image", "read into the environment when the spec loads"),
    "https": _values("proxy.https"),
    "https.hostname": _values("proxy.https.hosts"),
    "https.email": _values("proxy.https.letsencrypt.contactEmail"),
    "https.staging": _values("proxy.https.letsencrypt.acmeServer"),
    "content": _values("singleuser.defaultUrl (the first repository); links for the rest"),
    "content[].url": _values("singleuser.defaultUrl"),
    "content[].branch": _values("singleuser.defaultUrl"),
    "content[].open": _values("singleuser.defaultUrl"),
    "droplet": _droplet("the cluster's nodes are droplets you choose when you create it"),
    "droplet.region": _droplet("give it as the cluster's region: doctl kubernetes cluster create --region"),
    "droplet.size": _droplet("choose the cluster's node size instead (see the README's cost table)"),
    "droplet.image": _droplet("the cluster's nodes run DigitalOcean's own image"),
    "droplet.snapshot_regions": _droplet("the image workflow pushes one container image instead of snapshots"),
    "droplet.ssh_keys": _droplet("nobody logs in to the cluster's nodes; use kubectl"),
    "storage": _values("singleuser.storage"),
    "storage.type": _values("singleuser.storage.type"),
    "storage.size_gigabytes": _droplet("each student has a volume of their own: set z2jh.home_gigabytes"),
    "storage.device": Key("refused", "a cluster has no block device of the class (with storage.type: device)"),
    "storage.keep_backups": _droplet("classimage backs up a droplet's volume only; snapshot students' volumes"),
    "network": Key("refused", "a DigitalOcean cluster reaches the internet directly"),
    "network.proxy": Key("refused", "the cluster's nodes and students' servers do not go through it"),
    "network.ca_certificates": Key("refused", "the cluster's nodes and students' servers do not use them"),
    "tljh": _droplet("the chart pins JupyterHub 5.5.0 instead of TLJH"),
    "tljh.version": _droplet("the chart is pinned instead: " + CHART),
    "tljh.bootstrap_url": _droplet("nothing is bootstrapped on a cluster"),
    "workflows": Key("workflow", "the image workflow"),
    "workflows.classimage": Key("workflow", "what the image workflow installs classimage from"),
    "z2jh": _values("this target's own settings"),
    "z2jh.image": _values("singleuser.image.name; the image workflow pushes there"),
    "z2jh.home_gigabytes": _values("singleuser.storage.capacity"),
    "z2jh.memory_guarantee": _values("singleuser.memory.guarantee"),
    "z2jh.cpu_guarantee": _values("singleuser.cpu.guarantee"),
}


def problems(loaded: Loaded) -> list[Problem]:
    """What this target cannot honour (errors) and the droplet's own keys it does not use (warnings),
    each at its line in the spec."""
    spec, found = loaded.spec, []

    def at(path: tuple, message: str, fix: str, warning: bool = False) -> None:
        found.append(Problem(loaded.line(path, key=True), format_path(path), message, fix, warning))

    if spec.z2jh.image is None:
        at(
            ("z2jh",),
            "the z2jh target needs z2jh.image: where the image workflow pushes the course's environment",
            "add `z2jh:` with `image: registry.digitalocean.com/REGISTRY/" + spec.course.slug + "`",
        )
    if spec.storage.type == "device":
        at(
            ("storage", "type"),
            "`device` has no meaning on a cluster: each student's work is on a volume of their own",
            "use `auto` (a volume per student) for the z2jh target",
        )
    if spec.network.proxy is not None or spec.network.ca_certificates:
        at(
            ("network",),
            "a DigitalOcean cluster reaches the internet directly: its nodes and students' servers would not "
            "use the proxy or the certificates",
            "remove `network:` for the z2jh target",
        )
    names: list[tuple[tuple, str]] = [(("hub", "admins", i), n) for i, n in enumerate(spec.hub.admins)]
    names += [(("hub", "auth", "allowed_users", i), n) for i, n in enumerate(spec.hub.auth.allowed_users)]
    for where, name in names:
        if not re.fullmatch(USERNAME_PATTERN, name):
            at(
                where,
                f"{short(name)} is longer than 17 characters: the hub takes only names that a droplet's "
                "Unix users can carry too",
                "use a name of at most 17 letters, digits, - and _",
            )
    document = loaded.document
    for dotted, key in KEYS.items():
        parts = tuple(dotted.split("."))
        if key.kind != "droplet" or "[]" in dotted or document is None or document.get(parts) is None:
            continue
        if isinstance(document.get(parts), dict):
            continue  # its keys are reported, not the section
        at(parts, "is not used by the z2jh target", key.where, warning=True)
    return found


def check(loaded: Loaded, filename: str) -> list[Problem]:
    """The warnings; SpecError with every error, as validation reports them."""
    found = problems(loaded)
    errors = [p for p in found if not p.warning]
    if errors:
        raise SpecError(filename, found)
    return [p for p in found if p.warning]


# ---------------------------------------------------------------------------------------------
# The image: repo2docker's files for the environment the droplet installs


def image_files(spec: Spec) -> dict[str, str]:
    """environment.yml (channels, Python, conda and pip packages), apt.txt and postBuild: the same
    packages, Python and script as the droplet's steps, in repo2docker's words."""
    env = spec.environment
    pip = list(env.pip)
    if not any(re.split(r"[ \[=<>!~;@]", p, maxsplit=1)[0].lower() == "nbgitpuller" for p in pip):
        pip.append(NBGITPULLER)
    dependencies: list = [f"python={env.python or DROPLET_PYTHON}", *env.conda.packages, "pip", {"pip": pip}]
    environment = {"channels": list(env.conda.channels), "dependencies": dependencies}
    header = "# Written by classimage from the course spec: the environment a droplet of this course installs.\n"
    files = {"environment.yml": header + yaml.safe_dump(environment, sort_keys=False, allow_unicode=True)}
    if env.apt:
        files["apt.txt"] = "".join(package + "\n" for package in env.apt)
    if env.post_build is not None:
        script = env.post_build
        # A droplet runs a postBuild without #! with bash; repo2docker would run it with sh.
        files["postBuild"] = script if script.startswith("#!") else "#!/bin/bash\n" + script
    return files


def image_tag(files: Mapping[str, str]) -> str:
    """The image's tag: a digest of what builds it, so the values name the image of this environment."""
    digest = hashlib.sha256(REPO2DOCKER.encode())
    for name in sorted(files):
        digest.update(b"\0" + name.encode() + b"\0" + files[name].encode())
    return "env-" + digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# The chart's values


def values(spec: Spec, admin_hashes: Mapping[str, str | None]) -> dict:
    """The chart's values for the course (admins without a hash are reserved, as on a droplet)."""
    hub, auth = spec.hub, spec.hub.auth
    # The authenticator's own settings are the droplet's, as TLJH's config.yaml carries them.
    droplet = tljh.config(spec)["auth"]
    # The admins, the names' rule and the authenticator's class: hub.extraConfig (classimage/droplet/hubguards.py).
    config: dict = {"JupyterHub": {"authenticator_class": droplet["type"]}}
    if auth.method == "allowed-users":
        config["Authenticator"] = {"allowed_users": list(auth.allowed_users)}
    config.update({section: settings for section, settings in droplet.items() if section != "type"})
    hashes = {name: admin_hashes.get(name) for name in hub.admins}
    extra_config = templating.render(
        "z2jh/hub-config.py.j2",
        folder=FOLDER,
        admins=sorted(hub.admins),
        method=tljh.accounts_method(spec),
        hashes=hashes,
        username_pattern=USERNAME_PATTERN,
    )
    # classimage's programs that run in the hub pod, as a droplet ships them.
    extra_files = {
        f"classimage-{module}": {"mountPath": f"{FOLDER}/{module}.py", "stringData": shipping.shipped(module)}
        for module in ("hubaccounts", "hubguards")
    }
    files = image_files(spec)
    singleuser: dict = {
        "image": {"name": spec.z2jh.image, "tag": image_tag(files)},
        "defaultUrl": _default_url(spec),
        "memory": {"limit": hub.memory_limit, "guarantee": _memory_guarantee(spec)},
        "cpu": {"limit": hub.cpu_limit, "guarantee": _cpu_guarantee(spec)},
        "storage": (
            {"type": "none"}
            if spec.storage.type == "none"
            else {"type": "dynamic", "capacity": f"{spec.z2jh.home_gigabytes}Gi"}
        ),
    }
    idle = hub.idle_seconds
    result: dict = {
        "hub": {"config": config, "extraFiles": extra_files, "extraConfig": {"classimage": extra_config}},
        "singleuser": singleuser,
        # Never cull.users: culling a NativeAuthenticator user deletes their password.
        "cull": {"enabled": True, "timeout": idle, "users": False} if idle else {"enabled": False},
    }
    if spec.https.enabled:
        letsencrypt: dict = {"contactEmail": spec.https.email}
        if spec.https.staging:
            letsencrypt["acmeServer"] = LETS_ENCRYPT_STAGING
        result["proxy"] = {
            "https": {
                "enabled": True,
                "type": "letsencrypt",
                "hosts": [spec.https.hostname],
                "letsencrypt": letsencrypt,
            }
        }
    return result


def _default_url(spec: Spec) -> str:
    if spec.content:
        return links.gitpull_path(spec.content[0], spec.hub.default_app)
    return DEFAULT_URL[spec.hub.default_app]


def _memory_guarantee(spec: Spec) -> str:
    wanted, limit = spec.z2jh.memory_guarantee, spec.hub.memory_limit
    if limit is not None and units.memory_bytes(limit) < units.memory_bytes(wanted):
        return limit
    return wanted


def _cpu_guarantee(spec: Spec) -> float:
    wanted, limit = spec.z2jh.cpu_guarantee, spec.hub.cpu_limit
    return min(wanted, limit) if limit is not None else wanted


def helm_command(spec: Spec, values_path: str) -> list[str]:
    """Install or upgrade the class: the chart at its pinned release, the course's values."""
    slug = spec.course.slug
    return [
        "helm",
        "upgrade",
        "--install",
        slug,
        "jupyterhub",
        "--repo",
        CHART_REPOSITORY,
        "--version",
        CHART,
        "--namespace",
        slug,
        "--create-namespace",
        "--values",
        values_path,
    ]


class _Dumper(yaml.SafeDumper):
    """Block style; multi-line text (the hub's Python, the shipped files) as `|` blocks."""


def _text(dumper: yaml.SafeDumper, data: str):
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_Dumper.add_representer(str, _text)


def render(loaded: Loaded, admin_hashes: Mapping[str, str | None]) -> dict[str, str]:
    """{relative path: text}: the chart's values and the image's repo2docker files. Call check()
    first: a spec this target refuses has no z2jh.image."""
    spec = loaded.spec
    header = (
        f"# Written by classimage {__version__} for {spec.course.name}: Zero to JupyterHub's chart {CHART}.\n"
        f"# {' '.join(helm_command(spec, 'values.yaml'))}\n"
        "# It holds the bcrypt hashes of the admins' passwords: keep it out of the course repository.\n"
    )
    text = yaml.dump(values(spec, admin_hashes), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1 << 16)
    files = {VALUES: header + text}
    files.update({f"{IMAGE}/{name}": content for name, content in image_files(spec).items()})
    return files


def summary() -> dict[str, int]:
    """How many spec keys go where (the figure the issue asks for), by kind."""
    counts: dict[str, int] = {}
    for key in KEYS.values():
        counts[key.kind] = counts.get(key.kind, 0) + 1
    return counts
