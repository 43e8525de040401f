"""What happens on a droplet, in order: the course as a list of Steps (data). The one-piece, bake and
boot user data are renderings of this one list, filtered by stage."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import PurePosixPath

from classimage import droplet, network, templating, tljh
from classimage.model import Spec

BAKE = "bake"  # heavy, shared by every droplet: goes into a snapshot
BOOT = "boot"  # per droplet: identity, hub settings, readiness

# Packages TLJH's bootstrap needs before it runs (its documented prerequisites), curl to fetch
# it, and iptables for the metadata guard.
PREREQUISITES = ("python3", "python3-dev", "python3-venv", "git", "curl", "ca-certificates", "iptables")


@dataclass(frozen=True)
class File:
    """A file a step installs: staged by the user data, copied into place when the step runs."""

    step: str
    path: str
    content: str
    mode: str = "0644"

    @property
    def staged(self) -> str:
        return f"{droplet.LIB}/files/{self.step}/{PurePosixPath(self.path).name}"


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    stages: frozenset
    run: str  # bash script
    check: str | None = None  # bash script exiting 0 when the work is already in place
    files: tuple[File, ...] = ()
    when: str = "once"  # or "after-changes": run again whenever an earlier step ran
    timeout: int = 1800  # seconds

    @property
    def digest(self) -> str:
        """Changes whenever what the step does changes, so a changed step runs again."""
        parts = [self.run, self.check or ""] + [f"{f.path}\0{f.mode}\0{f.content}" for f in self.files]
        return hashlib.sha256("\0\0".join(parts).encode()).hexdigest()[:16]


def _step(name: str, title: str, stage: str, *, check: bool = False, files=(), when="once",
          timeout=1800, **values) -> Step:
    staged = tuple(File(name, path, content, mode) for path, content, mode in files)
    return Step(
        name=name,
        title=title,
        stages=frozenset([stage]),
        run=templating.render(f"steps/{name}.sh.j2", files=staged, **values),
        check=templating.render(f"steps/{name}.check.sh.j2", files=(), **values) if check else None,
        files=staged,
        when=when,
        timeout=timeout,
    )


def steps(spec: Spec) -> list[Step]:
    env = spec.environment
    packages = PREREQUISITES + tuple(p for p in env.apt if p not in PREREQUISITES)
    plan = []
    network_files = network.files(spec)
    if network_files:
        # First: apt, pip, conda and the TLJH bootstrap all download through this network.
        plan.append(_step("network", "Configure the proxy and trusted CAs", BAKE, files=network_files,
                          certificates=bool(spec.network.ca_certificates)))
    plan += [
        _step("packages", f"Install {len(packages)} system packages", BAKE, check=True, packages=packages),
        _step("metadata-guard", "Block non-root users from the metadata service", BAKE, check=True,
              guard=droplet.METADATA_GUARD,
              files=[(droplet.METADATA_GUARD, templating.static("metadata-guard.sh"), "0755"),
                     (droplet.METADATA_GUARD_UNIT, templating.static("classimage-metadata-guard.service"),
                      "0644")]),
        # Before TLJH, so the hub never runs with TLJH's default (anyone may sign in) settings.
        _step("hub-config", "Write the hub's settings", BOOT,
              files=[(tljh.CONFIG_YAML, tljh.config_yaml(spec), "0600"),
                     (f"{tljh.CONFIG_D}/classimage.py", tljh.jupyterhub_config(spec), "0644")]),
        _step("tljh", f"Install The Littlest JupyterHub {spec.tljh.version}", BAKE, check=True,
              url=spec.tljh.bootstrap_url, args=tljh.bootstrap_args(spec), version=spec.tljh.version,
              hub_python=tljh.HUB_PYTHON),
    ]
    if env.conda.packages:
        channels = [word for channel in env.conda.channels for word in ("--channel", channel)]
        plan.append(_step("conda-packages", f"Install {len(env.conda.packages)} conda packages", BAKE,
                          channels=channels, packages=env.conda.packages, user_bin=tljh.USER_BIN,
                          timeout=3600))
    if env.pip:
        plan.append(_step("pip-packages", f"Install {len(env.pip)} pip packages", BAKE,
                          requirements=env.pip, user_bin=tljh.USER_BIN))
    plan += [
        _step("hub-reload", "Restart the hub with the course's settings", BOOT, when="after-changes",
              timeout=300),
        _step("hub-ready", "Wait for the hub to answer", BOOT, when="after-changes", timeout=300,
              hub_api=tljh.HUB_API),
    ]
    return plan
