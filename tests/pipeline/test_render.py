"""Rendering: goldens per part (each step script, each file a step installs, the plan, the skeleton of
each user data), determinism, and the real tools' verdicts on what is rendered (cloud-init's schema,
shellcheck, TLJH's schema, the hub config run by traitlets).

The goldens live in tests/cases/render/EXAMPLE/: `steps/NAME.sh` (`NAME.STAGE.sh` where a step
differs between stages), `files/STEP/NAME`, `STAGE.plan.json` (step digests masked: they follow
from the scripts) and `STAGE.user-data.yaml` (the cloud-config with each file's content replaced by
the name of its golden). A change to one step rewrites one golden."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import CASES, EXAMPLES, REPO, check_golden, cli, written_files
from hubprocess import tljh_source
from classimage.pipeline import artifacts, links, network, packer, plan, shipping, spec, tljh, userdata
from classimage.droplet import hubaccounts, hubguards, provision

TLJH_CASES = sorted(p for p in (CASES / "tljh").iterdir() if p.is_dir())
# Every spec whose rendering the real tools must accept: the examples and the TLJH table's specs.
SPECS = EXAMPLES + [case / "spec.yaml" for case in TLJH_CASES]
CASE_IDS = [p.parent.name if p.name == "spec.yaml" else p.stem for p in SPECS]
RENDERINGS = [(path, stage) for path in SPECS for stage in plan.STAGES]
RENDERING_IDS = [f"{name}-{stage}" for name in CASE_IDS for stage in plan.STAGES]


def render(path: Path, stage: str = plan.FULL) -> str:
    return artifacts.render(spec.load_file(path))[artifacts.USER_DATA[stage]]


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[Path, str], str]:
    return {(path, stage): render(path, stage) for path, stage in RENDERINGS}


def scripts(user_data: str) -> dict[str, str]:
    """Every shell script the user data writes (step scripts, checks, staged helpers)."""
    return {path: entry["content"] for path, entry in written_files(user_data).items()
            if isinstance(entry["content"], str) and entry["content"].startswith(("#!/bin/bash", "#!/bin/sh"))}


# -- goldens per part -----------------------------------------------------------------------------

def parts(loaded: spec.Loaded) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """The example's parts by golden name, and for each (stage, path on the droplet) its golden name."""
    by_name: dict[str, dict[str, str]] = {}  # golden base name -> {stage: content}
    where: dict[tuple[str, str], str] = {}
    for stage in plan.STAGES:
        steps = plan.steps(loaded.spec, stage)
        for number, step in enumerate(steps, 1):
            pieces = [(userdata.script_path(number, step, "sh"), f"steps/{step.name}.sh", step.run)]
            if step.check:
                pieces.append((userdata.script_path(number, step, "check.sh"), f"steps/{step.name}.check.sh",
                               step.check))
            pieces += [(file.staged, f"files/{step.name}/{Path(file.path).name}", file.content) for file in step.files
                       if file.content not in SHIPPED]  # classimage's own modules, shipped lean
            for path, name, content in pieces:
                by_name.setdefault(name, {})[stage] = content
                where[stage, path] = name
    goldens: dict[str, str] = {}
    for name, variants in by_name.items():
        if len(set(variants.values())) == 1:
            goldens[name] = next(iter(variants.values()))
            continue
        for stage, content in variants.items():  # differs by stage: one golden per stage
            base, dot, suffix = name.partition(".")
            staged = f"{base}.{stage}{dot}{suffix}"
            goldens[staged] = content
            for key, value in list(where.items()):
                if key[0] == stage and value == name:
                    where[key] = staged
    return goldens, where


def masked_plan(text: str) -> str:
    document = json.loads(text)
    for step in document["steps"]:
        step["digest"] = "<from the step's scripts>"
    for key in ("spec_digest", "bake_digest"):
        document[key] = f"<{key}>"
    document["classimage"] = "<version>"
    return json.dumps(document, indent=2) + "\n"


def skeleton(text: str, stage: str, where: dict[tuple[str, str], str]) -> str:
    """The user data with each file's content replaced by the name of the golden that holds it."""
    document = yaml.safe_load(text)
    for entry in document["write_files"]:
        path = entry["path"]
        if path == provision.RUNNER:
            members = zipfile.ZipFile(io.BytesIO(written_files(text)[path]["content"])).namelist()
            entry["content"] = f"<classimage/droplet/runner.py and its modules, zipped with {' '.join(members)}, compressed>"
        elif (stage, path) in where:
            entry["content"] = f"<{where[stage, path]}>"
        elif entry.get("encoding") == "gz+b64":
            entry["content"] = "<one of classimage's modules, compressed>"
        elif path == provision.PLAN:
            entry["content"] = f"<{stage}.plan.json>"
        else:
            entry["content"] = f"<files/{Path(path).name}>"
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    return header + yaml.safe_dump(document, sort_keys=False, width=1 << 20)


# The class-data program is a folder of modules, shipped as one zip of them.
CLASS_DATA = sorted(f"classdata.{path.stem}" for path in (REPO / "classimage" / "droplet" / "classdata").glob("*.py"))
DROPLET_MODULES = (*userdata.RUNNER_MODULES, "hubaccounts", "hubguards", *CLASS_DATA)
SHIPPED = {shipping.shipped(name) for name in DROPLET_MODULES} | {shipping.packaged("classdata")}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_golden_parts(example, update_golden):
    loaded = spec.load_file(example)
    folder = CASES / "render" / example.stem
    goldens, where = parts(loaded)
    rendered_files = artifacts.render(loaded)
    for stage in plan.STAGES:
        text = rendered_files[artifacts.USER_DATA[stage]]
        files = written_files(text)
        goldens[f"{stage}.plan.json"] = masked_plan(files[provision.PLAN]["content"])
        goldens[f"{stage}.user-data.yaml"] = skeleton(text, stage, where)
        for path, entry in files.items():  # files outside the steps (the image's cleanup, the resume hook)
            if path not in (provision.RUNNER, provision.PLAN) and (stage, path) not in where \
                    and entry["content"] not in SHIPPED:  # classimage's own modules: their source is the truth
                goldens[f"files/{Path(path).name}"] = entry["content"]
    goldens[packer.TEMPLATE] = rendered_files[f"{artifacts.PACKER}/{packer.TEMPLATE}"]
    if update_golden:
        for old in folder.rglob("*"):
            if old.is_file() and str(old.relative_to(folder)) not in goldens:
                old.unlink()
    for name, content in sorted(goldens.items()):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        check_golden(folder / name, content, update_golden)
    stray = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()
                   and str(p.relative_to(folder)) not in goldens)
    assert stray == [], f"goldens nothing renders any more (pytest --update-golden removes them): {stray}"


def test_golden_class_data(update_golden):
    """The parts only a course with its data on a device has (the examples' goldens have the rest)."""
    loaded = spec.load_file(CASES / "tljh" / "campus-network" / "spec.yaml")
    goldens, _ = parts(loaded)
    mine = {name: text for name, text in goldens.items() if name.startswith(("steps/class-data", "files/class-data/"))}
    assert len(mine) == 7, sorted(mine)  # the step; its units: mount, copy, timer, the page socket and service;
    # the drop-in of the hub and the proxy
    folder = CASES / "render" / "class-data"
    for name, content in sorted(mine.items()):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        check_golden(folder / name, content, update_golden)



@pytest.mark.parametrize("stage", plan.STAGES)
def test_the_skeleton_and_the_parts_make_the_user_data(stage):
    """The goldens hold all of it: each file of the user data is exactly its part."""
    loaded = spec.load_file(EXAMPLES[0])
    goldens, where = parts(loaded)
    text = artifacts.render(loaded)[artifacts.USER_DATA[stage]]
    for path, entry in written_files(text).items():
        if (stage, path) in where:
            assert entry["content"] == goldens[where[stage, path]], path
    modules = SHIPPED | {userdata.runner()}  # the runner: its modules zipped
    entries = written_files(text).values()
    compressed = {entry["content"] for entry in entries if entry.get("encoding") == "gz+b64" or entry.get("zipped")}
    # classimage's own programs, as they are, always go compressed, in the runner's zip (the rest too, when the user data
    # as text would be over the limit: test_a_class_over_the_limit_...)
    shipped = {entry["content"] for entry in entries} & modules
    assert shipped and shipped <= compressed


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


# -- what the real tools say ----------------------------------------------------------------------

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
    assert document["runcmd"] == [[provision.RUNNER, "run"]]
    files = written_files(text)
    plan_document = provision.Plan.from_json(files[provision.PLAN]["content"])
    for step in plan_document.steps:
        assert step.run in files and files[step.run]["permissions"] == "0700"
        assert step.check is None or step.check in files
    assert files[provision.RUNNER]["permissions"] == "0755" and files[provision.RUNNER]["encoding"] == "gz+b64"
    assert files[provision.RESUME_HOOK]["content"].rstrip().endswith(f"exec {provision.RUNNER} resume")
    assert plan_document.stage == stage
    # Only Packer's build droplet gets the script that cleans the image.
    assert (provision.IMAGE_CLEANUP in files) == (stage == plan.BAKE)


def test_runner_runs_on_the_oldest_supported_python(tmp_path):
    """The runner runs under the droplet's python3 (Ubuntu 22.04 and Debian 11 have 3.9/3.10) as
    the one file the user data writes: a #! line and a zip of its modules, which Python runs."""
    program = tmp_path / "classimage-provision"
    program.write_bytes(userdata.runner())
    program.chmod(0o755)
    result = subprocess.run([str(program), "--help"], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0 and "classimage-provision" in result.stdout, result.stderr
    result = subprocess.run([str(program), "--root", str(tmp_path), "status"], capture_output=True, text=True)
    assert result.returncode == 1 and "provisioning has not started" in result.stdout, result.stderr
    with zipfile.ZipFile(program) as zipped:
        assert zipped.namelist() == ["__main__.py", *(f"{m}.py" for m in userdata.RUNNER_MODULES)]
        assert {member.compress_type for member in zipped.infolist()} == {zipfile.ZIP_STORED}  # gzip's to do
        # the same spec renders the same bytes: no member keeps the time it was zipped
        assert {member.date_time for member in zipped.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        for member in zipped.namelist():
            source = zipped.read(member).decode()
            ast.parse(source, feature_version=(3, 9))
            imports = {n.names[0].name.split(".")[0] for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Import)}
            imports |= {n.module.split(".")[0] for n in ast.walk(ast.parse(source))
                        if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
            assert imports <= set(sys.stdlib_module_names) | {"__future__"} | set(userdata.RUNNER_MODULES), imports


def test_the_class_data_program_is_one_zip_of_its_modules_that_runs_on_the_oldest_supported_python(tmp_path):
    """classimage-class-data, a folder of modules (classimage/droplet/classdata/), as the one file the
    class-data step installs: a #! line and a zip of the package, lean, whose relative imports find
    each other there; run by the droplet's python3, it loads every module (`wait` reads the record's
    module through the devices one) and answers."""
    loaded = spec.load_file(CASES / "tljh" / "campus-network" / "spec.yaml")
    step = next(s for s in plan.steps(loaded.spec, plan.FULL) if s.name == "class-data")
    (installed,) = [f for f in step.files if f.path == provision.CLASS_DATA]
    assert (installed.content, installed.mode, installed.compressed) == (shipping.packaged("classdata"), "0755", True)
    program = tmp_path / "classimage-class-data"
    program.write_bytes(installed.content)
    program.chmod(0o755)
    result = subprocess.run([str(program), "--help"], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0 and result.stdout.startswith("usage: classimage-class-data"), result.stderr
    result = subprocess.run([str(program), "wait", str(program), "--now"], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin"})
    assert (result.returncode, result.stdout) == (0, f"{program}\n"), result.stderr
    with zipfile.ZipFile(program) as zipped:
        assert zipped.namelist() == ["__main__.py", *(f"{name.replace('.', '/')}.py" for name in CLASS_DATA)]
        assert {member.compress_type for member in zipped.infolist()} == {zipfile.ZIP_STORED}  # gzip's to do
        assert {member.date_time for member in zipped.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        for member in zipped.namelist()[1:]:
            assert zipped.read(member).decode() == shipping.shipped(member.removesuffix(".py").replace("/", "."))
            ast.parse(zipped.read(member).decode(), feature_version=(3, 9))
    # In the runner's zip, as a file the step installs, stored: the user data's gzip compresses it too.
    text = artifacts.render(loaded)[artifacts.USER_DATA[plan.FULL]]
    assert written_files(text)[installed.staged]["content"] == installed.content


@pytest.mark.parametrize("case", TLJH_CASES, ids=lambda p: p.name)
def test_tljh_settings(case, update_golden):
    """The table of specs and the TLJH settings they imply (config.yaml, jupyterhub_config.d)."""
    loaded = spec.load_file(case / "spec.yaml")
    check_golden(case / "config.yaml", tljh.config_yaml(loaded.spec), update_golden)
    check_golden(case / "jupyterhub_config.py", tljh.jupyterhub_config(loaded.spec), update_golden)
    check_golden(case / "bootstrap-args.txt", " ".join(tljh.bootstrap_args(loaded.spec)) + "\n", update_golden)


@pytest.mark.parametrize("path, stage", RENDERINGS, ids=RENDERING_IDS)
def test_config_yaml_is_valid_for_tljh(path, stage, rendered):
    """The config.yaml in the user data validates against the pinned TLJH release's own schema,
    uses only keys TLJH knows, and never enables culling users (it would delete NativeAuthenticator
    passwords)."""
    version = spec.load_file(path).spec.tljh.version
    step = "hub-lockdown" if stage == plan.BAKE else "hub-config"
    settings = yaml.safe_load(written_files(rendered[path, stage])[plan.File(step, tljh.CONFIG_YAML, "").staged]["content"])
    schema = tljh.schema(version)
    jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER).validate(settings)
    assert tljh.problems(settings, version) == []
    assert not settings.get("services", {}).get("cull", {}).get("users", False)
    if stage == plan.BAKE:  # the build droplet's hub: nobody can sign up, no admin to approve anyone
        assert settings == tljh.lockdown(version)
        assert settings["auth"]["NativeAuthenticator"]["enable_signup"] is False and settings["users"]["admin"] == []
    elif settings["auth"]["type"] == tljh.NATIVE:
        native = settings["auth"]["NativeAuthenticator"]
        assert native["allow_all"] is True and native["open_signup"] is False
        assert {"allowed_failed_logins", "seconds_before_next_try", "minimum_password_length"} <= set(native)


@pytest.mark.parametrize("settings, message", [
    ({"limit": {"memory": "1G"}}, "limit: not a TLJH setting"),
    ({"limits": {"cpu": 0.5}}, "limits.cpu: 0.5 is not of type 'integer'"),  # 2.0.0 takes whole cores
    ({"limits": {"cpu": -1, "memory": None}}, "limits.memory: None is not of type 'string'"),
    ({"auth": {"type": tljh.NATIVE, "nativeauthenticator": {}}}, "lower-case keys"),
])
def test_tljh_check_refuses_what_tljh_2_0_0_would(settings, message):
    with pytest.raises(tljh.InvalidTljhConfig, match=message):
        tljh.check(settings, "2.0.0")


HUB_CONFIG_PROBE = """
import json, os, sys
from traitlets.config import Config
from tornado import web
c = Config()
exec(compile(open(sys.argv[1]).read(), sys.argv[1], "exec"), {"c": c})
environment = c.Spawner.get("environment")
services = c.JupyterHub.services  # TLJH's culler may be listed first: append() must keep it
class User: admin = sys.argv[2] == "admin"
class Spawner: user = User()
try:
    c.Spawner.pre_spawn_hook(Spawner())
    spawn = "allowed"
except web.HTTPError as error:
    spawn = error.log_message
print(json.dumps({"services": services.get_value([{"name": "cull-idle"}]),
                  "template_paths": c.JupyterHub.get("template_paths"),
                  "default_url": c.Spawner.get("default_url"),
                  "announcement": c.JupyterHub.get("template_vars", {}).get("announcement"),
                  "signup": c.NativeAuthenticator.get("enable_signup"),
                  "spawn": spawn,
                  # TLJH may have set some already: update() must merge, so start from one of its own
                  "environment": environment.get_value({"PATH": "tljh"}) if environment is not None else None}))
"""


def run_hub_config(text: str, folder: Path, user: str = "student", hub_open: bool = False) -> dict:
    """The jupyterhub_config.d file, run the way JupyterHub loads config files, with the real
    NativeAuthenticator installed, and with the class open or not (the marker under `folder`)."""
    marker = folder / "hub-open"
    if hub_open:
        marker.touch()
    config_file = folder / "classimage.py"
    # The guards the config imports, from where the hub-config step installs them (a folder here).
    (folder / Path(provision.HUB_GUARDS).name).write_text(shipping.shipped("hubguards"))
    config_file.write_text(text.replace(repr(provision.HUB_OPEN), repr(str(marker)))
                           .replace(repr(provision.LIB), repr(str(folder))))
    # TLJH's package importable, as in the hub's environment (the file reads TLJH's settings).
    result = subprocess.run([sys.executable, "-c", HUB_CONFIG_PROBE, str(config_file), user], capture_output=True,
                            text=True, cwd=folder, env=dict(os.environ, PYTHONPATH=str(tljh_source())))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("path", SPECS, ids=CASE_IDS)
def test_hub_config_runs_under_traitlets(path, rendered, tmp_path):
    loaded = spec.load_file(path)
    staged = plan.File("hub-config", tljh.CLASSIMAGE_CONFIG, "").staged
    applied = run_hub_config(written_files(rendered[path, plan.FULL])[staged]["content"], tmp_path, hub_open=True)
    if loaded.spec.hub.auth.method == "signup":
        (folder,) = applied["template_paths"]
        assert (Path(folder) / "authorization-area.html").is_file()  # NativeAuthenticator's templates
    else:
        assert applied["template_paths"] is None
    assert [s["name"] for s in applied["services"]] == ["cull-idle", provision.SERVICE]
    assert applied["services"][1]["command"][:2] == [provision.RUNNER, "serve-status"]
    wanted = network.environment(loaded.spec)
    assert applied["environment"] == ({"PATH": "tljh", **wanted} if wanted else None)
    first = loaded.spec.content[0] if loaded.spec.content else None
    assert applied["default_url"] == (links.gitpull_path(first, loaded.spec.hub.default_app) if first else None)
    assert applied["spawn"] == "allowed" and applied["announcement"] is None and applied["signup"] is None


@pytest.mark.parametrize("user, spawn", [("student", "being prepared"), ("admin", "allowed")])
def test_until_the_class_is_open_the_hub_says_so_and_starts_no_students_server(user, spawn, tmp_path):
    text = tljh.jupyterhub_config(spec.load_file(EXAMPLES[0]).spec)
    applied = run_hub_config(text, tmp_path, user=user, hub_open=False)
    assert "is being prepared" in applied["announcement"]
    assert applied["signup"] is False  # nobody claims an account before the admins' exist
    assert spawn in applied["spawn"]


@pytest.mark.parametrize("stage", [plan.FULL, plan.BOOT])
def test_https_settings_reach_tljh_only_with_the_class_data(stage, rendered):
    """TLJH's installer (full) and the snapshot's traefik (boot) run before the class's data, with
    Let's Encrypt's account and certificate, is mounted: the settings written before it have no
    HTTPS (traefik would order a certificate into the droplet's own disk); hub-reload, after it,
    writes them whole."""
    path = CASES / "tljh" / "signup-https-classic" / "spec.yaml"
    course = spec.load_file(path).spec
    files = written_files(rendered[path, stage])
    early = yaml.safe_load(files[plan.File("hub-config", tljh.CONFIG_YAML, "").staged]["content"])
    late = yaml.safe_load(files[plan.File("hub-reload", tljh.CONFIG_YAML, "").staged]["content"])
    assert "https" not in early and late == tljh.config(course) and late["https"]["enabled"] is True
    names = [step.name for step in plan.steps(course, stage)]
    assert names.index("class-data") < names.index("hub-reload")
    assert early == {key: value for key, value in late.items() if key != "https"}


def test_no_password_reaches_the_user_data(rendered):
    """No admin is a bootstrap flag (TLJH's `--admin name:password` form), and no setting holds a
    password or secret (an admin's password travels only as a hash, see test_admins.py)."""
    for (path, stage), text in rendered.items():
        assert "--admin" not in tljh.bootstrap_args(spec.load_file(path).spec)
        step = "hub-lockdown" if stage == plan.BAKE else "hub-config"
        staged = plan.File(step, tljh.CONFIG_YAML, "").staged
        keys = _keys(yaml.safe_load(written_files(text)[staged]["content"]))
        assert not [k for k in keys if k.rsplit(".", 1)[-1] in {"password", "secret", "token", "api_token"}], keys


def _keys(value, prefix=""):
    if not isinstance(value, dict):
        return []
    return [k for key, sub in value.items() for k in [prefix + key] + _keys(sub, prefix + key + ".")]


@pytest.mark.parametrize("case, stage, expected", [
    ("minimal", plan.FULL, ["packages", "metadata-guard", "firewall", "ssh", "hub-config", "tljh", "class-data",
                            "hub-accounts", "hub-reload", "hub-ready"]),
    ("underworld", plan.FULL, ["packages", "metadata-guard", "firewall", "ssh", "hub-config", "tljh",
                               "conda-packages", "pip-packages", "class-data", "hub-accounts", "hub-reload",
                               "hub-ready"]),
    ("underworld", plan.BAKE, ["packages", "security-updates", "metadata-guard", "firewall", "ssh", "hub-lockdown",
                               "tljh", "conda-packages", "pip-packages"]),
    ("underworld", plan.BOOT, ["image-check", "metadata-guard", "ssh", "hub-config", "class-data", "hub-secrets",
                               "hub-accounts", "hub-reload", "hub-ready"]),
])
def test_step_order(case, stage, expected):
    """The one list, filtered by stage: facts (spec, stage) in, steps out."""
    names = [s.name for s in plan.steps(spec.load_file(REPO / "examples" / f"{case}.yaml").spec, stage)]
    assert names == expected
    # The hub's settings land before TLJH first starts the hub, never after it ran with defaults.
    if "tljh" in names:
        settings = "hub-config" if stage == plan.FULL else "hub-lockdown"
        assert names.index(settings) < names.index("tljh")
    # Make before break: a droplet is ready but for the class's data (the software in place) when it
    # waits for the class's volume, and nothing is written into the hub's state before it is there.
    if "class-data" in names:
        software = [n for n in names if n in ("tljh", "conda-packages", "pip-packages", "post-build")]
        assert all(names.index(n) < names.index("class-data") for n in software)
        state = [n for n in names if n in ("hub-secrets", "hub-accounts", "hub-reload")]
        assert all(names.index("class-data") < names.index(n) for n in state)


def test_bake_digest_follows_the_bake_only():
    """What the snapshot holds changes with the software, not with per-droplet settings."""
    base = spec.load_file(REPO / "examples" / "underworld.yaml").spec
    other_admins = replace(base, hub=replace(base.hub, admins=("someone",)))
    other_network = replace(base, network=replace(base.network, proxy="http://proxy.example.edu:3128"))
    other_packages = replace(base, environment=replace(base.environment, pip=("jupytext",)))
    assert plan.bake_digest(other_admins) == plan.bake_digest(base)
    assert plan.bake_digest(other_network) == plan.bake_digest(base)  # re-applied at every boot
    assert plan.bake_digest(other_packages) != plan.bake_digest(base)


def test_a_class_over_the_limit_as_text_ships_its_biggest_savings_compressed(tmp_path):
    """Readable user data over 64 KiB (many packages, a campus's CAs): the files gzip saves most on go
    compressed (cloud-init's gz+b64), one at a time until it fits; the rest stays readable, and all
    decode to the same files."""
    source = {"course": {"name": "Big", "slug": "big"}, "hub": {"admins": ["alice"]},
              "environment": {"pip": [f"package-with-a-long-name-number-{i:05d}" for i in range(1200)]}}
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(source))
    loaded = spec.load_file(path)
    written = userdata.files(loaded.spec, loaded.digest, plan.FULL)
    readable = sum(len(f.encoded) for f in written)
    assert readable > userdata.LIMIT  # as text, it would not fit
    text = userdata.render(loaded.spec, loaded.digest, plan.FULL)
    assert len(text.encode()) <= userdata.LIMIT
    assert {p: f["content"] for p, f in written_files(text, unzipped=False).items()} == {f.path: f.content for f in written}
    entries = {entry["path"]: entry for entry in yaml.safe_load(text)["write_files"]}
    assert entries[provision.PLAN].get("encoding") == "gz+b64"  # the package list, in the plan
    scripts = {path: entry.get("encoding") for path, entry in entries.items() if path.endswith(".sh")}
    assert [path for path, encoding in scripts.items() if not encoding], "every script compressed"
    # Nothing compressed that need not be: any one of them shipped readable instead goes over the limit.
    shipped = [replace(f, compressed=entries[f.path].get("encoding") == "gz+b64") for f in written]
    chosen = [i for i, f in enumerate(shipped) if f.compressed and not written[i].compressed]
    assert chosen
    for i in chosen:
        readable_one = [replace(f, compressed=False) if j == i else f for j, f in enumerate(shipped)]
        assert len(userdata.document(readable_one, plan.FULL).encode()) > userdata.LIMIT, shipped[i].path


def test_too_large_user_data_is_refused_and_nothing_written(tmp_path):
    # names gzip cannot shrink much: the user data is compressed before it is refused
    requirements = "\n".join(f"    - p{hashlib.sha256(str(i).encode()).hexdigest()[:40]}" for i in range(3000))
    spec_file = tmp_path / "huge.yaml"
    spec_file.write_text(f"course: {{name: Huge, slug: huge}}\nhub: {{admins: [alice]}}\n"
                         f"environment:\n  pip:\n{requirements}\n")
    result = cli("render", str(spec_file), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "over the 65,536-byte limit" in result.stderr.decode()
    assert not (tmp_path / "out").exists()


def test_every_name_the_schema_allows_fits_the_class_data_units():
    """The units carry the device, the course's slug and the admins' names: systemd's quoting is
    not the shell's, so the unit filter takes only plain words; every word the schema allows is one."""
    loaded = spec.load_file(CASES / "tljh" / "campus-network" / "spec.yaml")
    course = replace(loaded.spec, hub=replace(loaded.spec.hub, admins=("a_b-c9", "0")))
    step = next(s for s in plan.steps(course, plan.FULL) if s.name == "class-data")
    unit = next(f.content for f in step.files if f.path == provision.DATA_UNIT)
    assert "--admin a_b-c9 --admin 0\n" in unit


@pytest.mark.parametrize("name", DROPLET_MODULES)
def test_a_shipped_program_is_its_source_line_for_line_without_comments_or_docstrings(name):
    """The droplet's programs go lean (the user data holds 64 KiB): a traceback there names the line
    of the file in this commit, every statement is where it was, and what is gone is only prose."""
    source = (REPO / "classimage" / "droplet" / f"{name.replace('.', '/')}.py").read_text()
    lean = shipping.shipped(name)
    assert lean.count("\n") == source.count("\n")

    def statements(text):
        return [(type(node).__name__, node.lineno) for node in ast.walk(ast.parse(text))
                if isinstance(node, ast.stmt) and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
    assert statements(lean) == statements(source)
    kept_doc = ast.get_docstring(ast.parse(lean))
    assert (kept_doc or None) == (ast.get_docstring(ast.parse(source)) if "__doc__" in source else None)  # --help
    assert not any(ast.get_docstring(node) for node in ast.walk(ast.parse(lean))
                   if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))
    assert "#" not in "".join(line for line in lean.splitlines()[1:] if line.lstrip().startswith("#"))
    assert len(lean) < 0.95 * len(source)
