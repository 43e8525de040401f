"""Rendering: golden user data for the examples, determinism, and the real tools' verdicts on what
is rendered (cloud-init's schema, shellcheck, TLJH's schema, the hub config run by traitlets)."""

from __future__ import annotations

import ast
import json
from dataclasses import replace
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import CASES, EXAMPLES, REPO, check_golden, cli, written_files
from classimage import droplet, links, network, packer, plan, spec, tljh, userdata

TLJH_REFERENCE = REPO.parent / "shared" / "reference" / "tljh" / "config.schema.json"
VENDORED_TLJH_SCHEMA = REPO / "schemas" / "tljh-config.schema.json"
TLJH_CASES = sorted(p for p in (CASES / "tljh").iterdir() if p.is_dir())
# Every spec whose rendering the real tools must accept: the examples and the TLJH table's specs.
SPECS = EXAMPLES + [case / "spec.yaml" for case in TLJH_CASES]


CASE_IDS = [p.parent.name if p.name == "spec.yaml" else p.stem for p in SPECS]
RENDERINGS = [(path, stage) for path in SPECS for stage in plan.STAGES]
RENDERING_IDS = [f"{name}-{stage}" for name in CASE_IDS for stage in plan.STAGES]


def render(path: Path, stage: str = plan.FULL) -> str:
    return userdata.render(spec.load_file(path), stage)


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[Path, str], str]:
    return {(path, stage): render(path, stage) for path, stage in RENDERINGS}


def scripts(user_data: str) -> dict[str, str]:
    """Every shell script the user data writes (step scripts, checks, staged helpers)."""
    return {path: entry["content"] for path, entry in written_files(user_data).items()
            if entry["content"].startswith(("#!/bin/bash", "#!/bin/sh"))}


@pytest.mark.parametrize("stage", plan.STAGES)
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_golden_user_data(example, stage, update_golden):
    check_golden(CASES / "render" / f"{example.stem}.{stage}.user-data.yaml", render(example, stage), update_golden)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_golden_packer_template(example, update_golden):
    template = packer.files(spec.load_file(example).spec)[packer.TEMPLATE]
    check_golden(CASES / "render" / f"{example.stem}.{packer.TEMPLATE}", template, update_golden)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_render_is_deterministic_across_processes(example, tmp_path):
    """Same spec, same bytes: two cold processes with different hash seeds."""
    outputs = []
    for seed in ("1", "2"):
        result = cli("render", str(example), "--stdout", env={"PYTHONHASHSEED": seed})
        assert result.returncode == 0, result.stderr.decode()
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0].decode() == render(example)


@pytest.mark.parametrize("path, stage", RENDERINGS, ids=RENDERING_IDS)
def test_cloud_init_accepts_user_data(path, stage, rendered, tmp_path):
    target = tmp_path / "user-data.yaml"
    target.write_text(rendered[path, stage])
    result = subprocess.run(["cloud-init", "schema", "--config-file", str(target)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"Valid cloud-config: {target}", result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("path, stage", RENDERINGS, ids=RENDERING_IDS)
def test_every_script_passes_shellcheck(path, stage, rendered, tmp_path):
    found = scripts(rendered[path, stage])
    assert len(found) >= 5, sorted(found)
    for number, (name, content) in enumerate(sorted(found.items())):
        script = tmp_path / f"{number}.sh"
        script.write_text(content)
        result = subprocess.run(["shellcheck", "--severity=style", "--external-sources", str(script)],
                                capture_output=True, text=True)
        assert result.returncode == 0, f"{name}:\n{result.stdout}"


@pytest.mark.parametrize("stage", plan.STAGES)
def test_user_data_layout(rendered, stage):
    """What the instructor pastes: one #cloud-config document that writes the runner, its plan and
    the step scripts, and runs the runner once."""
    text = rendered[EXAMPLES[0], stage]
    assert text.startswith("#cloud-config\n")
    document = yaml.safe_load(text)
    assert set(document) == {"write_files", "runcmd"}
    assert document["runcmd"] == [[droplet.RUNNER, "run"]]
    files = written_files(text)
    plan_document = json.loads(files[droplet.PLAN]["content"])
    for step in plan_document["steps"]:
        assert step["run"] in files and files[step["run"]]["permissions"] == "0700"
        assert step["check"] is None or step["check"] in files
    assert files[droplet.RUNNER]["permissions"] == "0755"
    assert files[droplet.RESUME_HOOK]["content"].rstrip().endswith(f"exec {droplet.RUNNER} resume")
    assert plan_document["stage"] == stage
    # Only Packer's build droplet gets the scripts that seal and clean the image.
    assert (droplet.FINISH_BAKE in files) == (droplet.IMAGE_CLEANUP in files) == (stage == plan.BAKE)


def test_runner_runs_on_the_oldest_supported_python(rendered):
    """The runner runs under the droplet's python3: Debian 11 has 3.9."""
    source = written_files(rendered[EXAMPLES[0], plan.FULL])[droplet.RUNNER]["content"]
    ast.parse(source, feature_version=(3, 9))
    result = subprocess.run(["/usr/bin/python3", "-c", source, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "classimage-provision" in result.stdout, result.stderr


@pytest.mark.parametrize("case", TLJH_CASES, ids=lambda p: p.name)
def test_tljh_settings(case, update_golden):
    """The table of specs and the TLJH settings they imply (config.yaml, jupyterhub_config.d)."""
    loaded = spec.load_file(case / "spec.yaml")
    check_golden(case / "config.yaml", tljh.config_yaml(loaded.spec), update_golden)
    check_golden(case / "jupyterhub_config.py", tljh.jupyterhub_config(loaded.spec), update_golden)
    check_golden(case / "bootstrap-args.txt", " ".join(tljh.bootstrap_args(loaded.spec)) + "\n", update_golden)


def test_vendored_tljh_schema_is_tljhs():
    if not TLJH_REFERENCE.exists():
        pytest.skip("the shared TLJH reference is not beside this checkout")
    assert json.loads(VENDORED_TLJH_SCHEMA.read_text()) == json.loads(TLJH_REFERENCE.read_text())


@pytest.mark.parametrize("path, stage", RENDERINGS, ids=RENDERING_IDS)
def test_config_yaml_is_valid_for_tljh(path, stage, rendered):
    """The config.yaml in the user data validates against TLJH's own schema, uses only keys TLJH
    knows (its schema cannot refuse unknown top-level keys, so this test does), and never enables
    culling users (it would delete NativeAuthenticator passwords)."""
    schema_file = TLJH_REFERENCE if TLJH_REFERENCE.exists() else VENDORED_TLJH_SCHEMA
    schema = json.loads(schema_file.read_text())
    step = "hub-lockdown" if stage == plan.BAKE else "hub-config"
    settings = yaml.safe_load(written_files(rendered[path, stage])[plan.File(step, tljh.CONFIG_YAML, "").staged]["content"])
    jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER).validate(settings)
    assert set(settings) <= set(schema["properties"]) - {"additionalProperties"} | {"auth"}
    assert not settings.get("services", {}).get("cull", {}).get("users", False)
    for name in settings["auth"]:
        assert name == "type" or name[0].isupper(), f"auth.{name}: TLJH refuses lower-case keys"
    if stage == plan.BAKE:  # the build droplet's hub: nobody can sign up, no admin to approve anyone
        assert settings == tljh.lockdown()
        assert settings["auth"]["NativeAuthenticator"]["enable_signup"] is False and settings["users"]["admin"] == []
    elif settings["auth"]["type"] == tljh.NATIVE:
        native = settings["auth"]["NativeAuthenticator"]
        assert native["allow_all"] is True and native["open_signup"] is False
        assert {"allowed_failed_logins", "seconds_before_next_try", "minimum_password_length"} <= set(native)


def test_tljh_check_refuses_what_tljh_would():
    with pytest.raises(tljh.InvalidTljhConfig, match="unknown TLJH settings"):
        tljh.check({"limit": {"memory": "1G"}})
    with pytest.raises(tljh.InvalidTljhConfig, match="limits.cpu"):
        tljh.check({"limits": {"cpu": -1}})
    with pytest.raises(tljh.InvalidTljhConfig, match="lower-case keys"):
        tljh.check({"auth": {"type": tljh.NATIVE, "nativeauthenticator": {}}})


HUB_CONFIG_PROBE = """
import json, sys
from traitlets.config import Config
c = Config()
exec(compile(open(sys.argv[1]).read(), sys.argv[1], "exec"), {"c": c})
environment = c.Spawner.get("environment")
services = c.JupyterHub.services  # TLJH's culler may be listed first: append() must keep it
print(json.dumps({"services": services.get_value([{"name": "cull-idle"}]),
                  "template_paths": c.JupyterHub.get("template_paths"),
                  "default_url": c.Spawner.get("default_url"),
                  # TLJH may have set some already: update() must merge, so start from one of its own
                  "environment": environment.get_value({"PATH": "tljh"}) if environment is not None else None}))
"""


@pytest.mark.parametrize("path", SPECS, ids=CASE_IDS)
def test_hub_config_runs_under_traitlets(path, rendered, tmp_path):
    """The jupyterhub_config.d file, run the way JupyterHub loads config files, with the real
    NativeAuthenticator installed: its template folder exists and holds the authorization page."""
    loaded = spec.load_file(path)
    staged = plan.File("hub-config", f"{tljh.CONFIG_D}/classimage.py", "").staged
    config_file = tmp_path / "classimage.py"
    config_file.write_text(written_files(rendered[path, plan.FULL])[staged]["content"])
    result = subprocess.run([sys.executable, "-c", HUB_CONFIG_PROBE, str(config_file)], capture_output=True,
                            text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    applied = json.loads(result.stdout)
    if loaded.spec.hub.auth.method == "signup":
        (folder,) = applied["template_paths"]
        assert (Path(folder) / "authorization-area.html").is_file()
    else:
        assert applied["template_paths"] is None
    assert [s["name"] for s in applied["services"]] == ["cull-idle", tljh.STATUS_SERVICE]
    assert applied["services"][1]["command"][:2] == [droplet.RUNNER, "serve-status"]
    wanted = network.environment(loaded.spec)
    assert applied["environment"] == ({"PATH": "tljh", **wanted} if wanted else None)
    first = loaded.spec.content[0] if loaded.spec.content else None
    assert applied["default_url"] == (links.gitpull_path(first, loaded.spec.hub.default_app) if first else None)


def test_no_password_reaches_the_user_data(rendered):
    """Admins are named, never given a password (TLJH's `--admin name:password` form), and the build
    droplet is given none at all."""
    for (path, stage), text in rendered.items():
        loaded = spec.load_file(path)
        args = tljh.bootstrap_args(loaded.spec, with_admins=stage == plan.FULL)
        admins = [args[i + 1] for i, arg in enumerate(args) if arg == "--admin"]
        assert admins == (list(loaded.spec.hub.admins) if stage == plan.FULL else [])
        assert not any(":" in admin for admin in admins)
        step = "hub-lockdown" if stage == plan.BAKE else "hub-config"
        staged = plan.File(step, tljh.CONFIG_YAML, "").staged
        keys = _keys(yaml.safe_load(written_files(text)[staged]["content"]))
        assert not [k for k in keys if k.rsplit(".", 1)[-1] in {"password", "secret", "token", "api_token"}], keys


def _keys(value, prefix=""):
    if not isinstance(value, dict):
        return []
    return [k for key, sub in value.items() for k in [prefix + key] + _keys(sub, prefix + key + ".")]


@pytest.mark.parametrize("case, stage, expected", [
    ("minimal", plan.FULL, ["packages", "metadata-guard", "firewall", "hub-config", "tljh", "hub-reload", "hub-ready"]),
    ("underworld", plan.FULL, ["packages", "metadata-guard", "firewall", "hub-config", "tljh", "conda-packages",
                               "pip-packages", "hub-reload", "hub-ready"]),
    ("underworld", plan.BAKE, ["packages", "security-updates", "metadata-guard", "firewall", "hub-lockdown", "tljh",
                               "conda-packages", "pip-packages"]),
    ("underworld", plan.BOOT, ["image-check", "hub-config", "hub-secrets", "hub-reload", "hub-ready"]),
])
def test_step_order(case, stage, expected):
    """The one list, filtered by stage: facts (spec, stage) in, steps out."""
    names = [s.name for s in plan.steps(spec.load_file(REPO / "examples" / f"{case}.yaml").spec, stage)]
    assert names == expected
    # The hub's settings land before TLJH first starts the hub, never after it ran with defaults.
    if "tljh" in names:
        settings = "hub-config" if stage == plan.FULL else "hub-lockdown"
        assert names.index(settings) < names.index("tljh")


def test_bake_digest_follows_the_bake_only():
    """What the snapshot holds changes with the software, not with per-droplet settings."""
    base = spec.load_file(REPO / "examples" / "underworld.yaml").spec
    other_admins = replace(base, hub=replace(base.hub, admins=("someone",)))
    other_network = replace(base, network=replace(base.network, proxy="http://proxy.example.edu:3128"))
    other_packages = replace(base, environment=replace(base.environment, pip=("jupytext",)))
    assert plan.bake_digest(other_admins) == plan.bake_digest(base)
    assert plan.bake_digest(other_network) == plan.bake_digest(base)  # re-applied at every boot
    assert plan.bake_digest(other_packages) != plan.bake_digest(base)


def test_too_large_user_data_is_refused_and_nothing_written(tmp_path):
    requirements = "\n".join(f"    - package-with-a-long-name-number-{i:05d}" for i in range(3000))
    spec_file = tmp_path / "huge.yaml"
    spec_file.write_text(f"course: {{name: Huge, slug: huge}}\nhub: {{admins: [alice]}}\n"
                         f"environment:\n  pip:\n{requirements}\n")
    result = cli("render", str(spec_file), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "over the 65,536-byte limit" in result.stderr.decode()
    assert not (tmp_path / "out").exists()
