"""The z2jh target (render --target z2jh): Zero to JupyterHub's own chart 4.4.0 takes the values, its
own jupyterhub_config.py and z2jh.py run on them in a sandbox laid out as the hub pod mounts them
(with the real KubeSpawner, NativeAuthenticator, FirstUseAuthenticator and JupyterHub 5.5), and a
hub started from that config is attacked over HTTP; repo2docker reads the image's files; the image
workflow passes GitHub's schema and zizmor."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import bcrypt
import jsonschema
import pytest
import yaml

from conftest import CASES, EXAMPLES, REPO, cli
from hubprocess import chart_source, helm_values, hub_pod, pod_sandbox, unpack
from classimage.pipeline import reference, spec, units, workflows, z2jh

TLJH_ARCHIVE = "the-littlest-jupyterhub-2.0.0.tar.gz"
PASSWORD = "correct horse battery staple"
IMAGE = "registry.digitalocean.com/geo101/underworld"


@pytest.fixture(scope="module")
def chart() -> Path:
    """The chart's folder (values.yaml, values.schema.yaml, files/hub/) from the vendored release."""
    return chart_source()


def course(tmp_path: Path, extra: str = "", base: Path = REPO / "examples" / "underworld.yaml") -> Path:
    """A course spec with an image for the cluster, and `extra` YAML merged in."""
    data = yaml.safe_load(base.read_text())
    data.setdefault("z2jh", {})["image"] = IMAGE
    for key, value in (yaml.safe_load(extra) or {}).items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def rendered(path: Path, hashes: dict | None = None) -> dict[str, str]:
    loaded = spec.load_file(path)
    z2jh.check(loaded, str(path))
    return z2jh.render(loaded, hashes or {})


# ---------------------------------------------------------------------------------------------
# Helm's side: the values it would store for the hub pod, checked as its packaging checks them


def values_schema(chart: Path) -> dict:
    """values.schema.json as the chart's packaging makes it (tools/generate-json-schema.py): the YAML
    schema without its `description`s, at every level of `properties`."""
    def clean(schema):
        schema.pop("description", None)
        for sub in schema.get("properties", {}).values():
            if isinstance(sub, dict):
                clean(sub)
        return schema
    return clean(yaml.safe_load((chart / "values.schema.yaml").read_text()))


def schema_errors(chart: Path, text: str) -> list[str]:
    values = helm_values(chart, text)
    del values["Chart"], values["Release"]  # helm validates .Values only
    validator = jsonschema.Draft7Validator(values_schema(chart))
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(values)]


VARIANTS = {
    "underworld": "",
    "https-staging": "https: {hostname: hub.geo101.example.edu, email: prof@example.edu, staging: true}",
    "first-use": "hub: {auth: {method: first-use}, idle_timeout: never, memory_limit: null, cpu_limit: null}",
    "allowed-users": "hub: {auth: {method: allowed-users, allowed_users: [alice, bob]}}",
    "no-storage": "storage: {type: none}\ncontent: []\nhub: {default_app: classic}",
    "small": "hub: {memory_limit: 256M, cpu_limit: 1}\nz2jh: {home_gigabytes: 5, cpu_guarantee: 2}",
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_z2jh_values_validate_against_the_charts_own_schema(chart, tmp_path, variant):
    files = rendered(course(tmp_path, VARIANTS[variant]), {"instructor": bcrypt.hashpw(b"x", bcrypt.gensalt()).decode()})
    assert schema_errors(chart, files[z2jh.VALUES]) == []
    # Kubernetes refuses a pod whose request is above its limit (requests must be <= limits).
    single = yaml.safe_load(files[z2jh.VALUES])["singleuser"]
    if single["memory"]["limit"] is not None:
        assert units.memory_bytes(single["memory"]["guarantee"]) <= units.memory_bytes(single["memory"]["limit"])
    if single["cpu"]["limit"] is not None:
        assert single["cpu"]["guarantee"] <= single["cpu"]["limit"]


def test_z2jh_the_schema_check_catches_what_the_chart_refuses(chart, tmp_path):
    text = rendered(course(tmp_path))[z2jh.VALUES]
    broken = yaml.safe_load(text)
    broken["cull"]["timeout"] = "30m"  # the chart takes seconds
    broken["singleuser"]["storage"]["kind"] = "volume"  # no such key
    errors = schema_errors(chart, yaml.safe_dump(broken))
    assert any(e.startswith("cull.timeout") for e in errors) and any("kind" in e for e in errors), errors


def test_z2jh_every_spec_key_is_mapped_or_refused():
    assert set(z2jh.KEYS) == {key.path for key in reference.keys()}
    assert {key.kind for key in z2jh.KEYS.values()} <= {"values", "image", "workflow", "commands", "droplet", "refused"}


# ---------------------------------------------------------------------------------------------
# Refusals: reported as every other validation problem, nothing written


@pytest.mark.parametrize("extra, where, words", [
    ("storage: {type: device, device: /dev/disk/by-id/virtio-data}", "storage.type", "no meaning on a cluster"),
    ("network: {proxy: 'http://proxy.example.edu:3128'}", "network", "reaches the internet directly"),
    ("hub: {admins: [instructor, a-very-long-admin-name]}", "hub.admins[1]", "is not a hub user name"),  # the schema: 17 at most
    ("z2jh: {image: null}", "z2jh", "needs z2jh.image"),
])
def test_z2jh_refusals_are_reported_with_file_line_key_and_fix(tmp_path, extra, where, words):
    path = course(tmp_path, extra)
    if "image: null" in extra:
        data = yaml.safe_load(path.read_text())
        del data["z2jh"]
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "out"
    result = cli("render", str(path), "--target", "z2jh", "--out", str(out))
    err = result.stderr.decode()
    assert result.returncode == 1, err
    line = next(x for x in err.splitlines() if not x.startswith("warning:") and f" {where}: " in x)
    assert re.match(rf"^{re.escape(str(path))}:[0-9]+ {re.escape(where)}: .*{words}.* \(.+\)$", line), line
    assert "Traceback" not in err and not out.exists()
    assert cli("validate", str(path), "--target", "z2jh").returncode == 1


def test_z2jh_droplet_keys_are_named_as_unused(tmp_path):
    result = cli("render", str(course(tmp_path)), "--target", "z2jh", "--out", str(tmp_path / "out"))
    err = result.stderr.decode()
    assert result.returncode == 0, err
    for key in ("droplet.region", "droplet.size", "tljh.version"):
        assert re.search(rf"^warning: .*spec\.yaml:[0-9]+ {re.escape(key)}: is not used by the z2jh target", err, re.M), key
    assert "helm upgrade --install underworld jupyterhub" in err and f"--version {z2jh.CHART}" in err


def test_z2jh_render_is_deterministic_and_holds_what_the_spec_says(tmp_path):
    path = course(tmp_path, "https: {hostname: hub.geo101.example.edu, email: prof@example.edu}")
    first, second = rendered(path), rendered(path)
    assert first == second
    values = yaml.safe_load(first[z2jh.VALUES])
    assert values["singleuser"]["image"] == {"name": IMAGE, "tag": z2jh.image_tag(z2jh.image_files(spec.load_file(path).spec))}
    assert values["proxy"]["https"] == {"enabled": True, "type": "letsencrypt", "hosts": ["hub.geo101.example.edu"],
                                        "letsencrypt": {"contactEmail": "prof@example.edu"}}
    changed = course(tmp_path, "environment: {pip: [lavavu, xvfbwrapper, jupytext, pint]}")
    assert yaml.safe_load(rendered(changed)[z2jh.VALUES])["singleuser"]["image"]["tag"] != values["singleuser"]["image"]["tag"]


# ---------------------------------------------------------------------------------------------
# The chart's own hub config, run on the values where the hub pod has them


PROBE = r'''
import asyncio, json, sys
from jupyterhub.app import JupyterHub
from jupyterhub import orm

app = JupyterHub()
app.load_config_file("/usr/local/etc/jupyterhub/jupyterhub_config.py")
config = app.config
from kubespawner import KubeSpawner

async def made():  # KubeSpawner makes its Kubernetes client in the running event loop
    spawner = KubeSpawner(config=config, _mock=True)
    spawner.api_token = "probe"
    return spawner, (await spawner.get_pod_manifest()).to_dict(), spawner.get_pvc_manifest().to_dict()

spawner, pod, pvc = asyncio.run(made())
session = orm.new_session_factory(config.JupyterHub.db_url)()
authenticator = config.JupyterHub.authenticator_class(config=config, _deprecated_db_session=session)
found = {}
if authenticator.__class__.__name__ == "CourseNativeAuthenticator":
    from nativeauthenticator.orm import UserInfo
    for row in session.query(UserInfo).all():
        found[row.username] = {"authorized": row.is_authorized, "hash": row.password.decode()}
    names = list(json.loads(sys.argv[1]))
    # The attack: an admin deleted in the admin panel (or never approved), then signed up by anyone.
    for name in authenticator.admin_users:
        session.query(UserInfo).filter_by(username=name).delete()
    session.commit()
    claimed = {name: authenticator.create_user(name, "a long new password 1!") is not None for name in names}
    routes = {route: handler.__name__ for route, handler in authenticator.get_handlers(None)}
else:
    import dbm
    with dbm.open(config.FirstUseAuthenticator.dbm_path, "w") as store:
        found = {key.decode(): {"hash": store[key].decode()} for key in store.keys()}
        for name in authenticator.admin_users:  # the same attack: an admin deleted from the store
            del store[name.encode()]
    claimed = {name: asyncio.run(authenticator.authenticate(None, {"username": name, "password": "any password 12"}))
               is not None for name in json.loads(sys.argv[1])}
    routes = {}
print(json.dumps({
    "authenticator": authenticator.__class__.__name__,
    "admin_users": sorted(authenticator.admin_users),
    "allowed_users": sorted(authenticator.allowed_users),
    "username_pattern": authenticator.username_pattern,
    "valid": {n: authenticator.validate_username(n) for n in ("alice", "eighteen-characters", "Bob", "a/b")},
    "native": {k: getattr(authenticator, k, None) for k in ("open_signup", "ask_email_on_signup",
               "minimum_password_length", "allowed_failed_logins", "seconds_before_next_try")},
    "accounts": found, "claimed": claimed, "routes": routes,
    "template_paths": list(config.JupyterHub.template_paths),
    "services": list(config.JupyterHub.services), "roles": list(config.JupyterHub.load_roles),
    "default_url": config.Spawner.default_url,
    "spawner": {k: getattr(spawner, k) for k in ("image", "mem_limit", "mem_guarantee", "cpu_limit",
               "cpu_guarantee", "storage_capacity", "storage_pvc_ensure", "namespace")},
    "pod": pod, "pvc": pvc,
}, default=str))
'''


def probe(chart: Path, root: Path, values_text: str, names: list[str]) -> dict:
    etc, state = hub_pod(chart, values_text, root)
    result = subprocess.run(pod_sandbox(etc, state, [sys.executable, "-c", PROBE, json.dumps(names)]),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def hashed() -> str:
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


def test_z2jh_the_charts_hub_config_runs_the_values(chart, tmp_path, hashed):
    """KubeSpawner, the culler, storage, the image and the sign-in rules, as the chart's own config
    makes them from the values, and the admins' accounts made before the hub serves anything."""
    path = course(tmp_path, "hub: {admins: [instructor, ta]}")
    values_text = rendered(path, {"instructor": hashed})[z2jh.VALUES]
    found = probe(chart, tmp_path / "pod", values_text, ["instructor", "ta", "alice"])
    tag = yaml.safe_load(values_text)["singleuser"]["image"]["tag"]
    assert found["spawner"] == {"image": f"{IMAGE}:{tag}", "mem_limit": 2 << 30, "mem_guarantee": 512 << 20,
                                "cpu_limit": 1.0, "cpu_guarantee": 0.1, "storage_capacity": "1Gi",
                                "storage_pvc_ensure": True, "namespace": "underworld"}
    container = found["pod"]["spec"]["containers"][0]
    assert container["image"] == f"{IMAGE}:{tag}"
    assert container["resources"]["limits"] == {"cpu": 1.0, "memory": 2 << 30}
    assert container["resources"]["requests"] == {"cpu": 0.1, "memory": 512 << 20}
    assert any(m["mount_path"] == "/home/jovyan" for m in container["volume_mounts"])
    assert found["pvc"]["spec"]["resources"]["requests"] == {"storage": "1Gi"}
    (culler,) = [s for s in found["services"] if s["name"] == "jupyterhub-idle-culler"]
    assert "--timeout=1800" in culler["command"] and "--cull-users" not in culler["command"]
    assert found["default_url"].startswith("/git-pull?repo=https%3A%2F%2Fgithub.com%2Funderworld")
    # Sign-in: NativeAuthenticator, approval only, the same limits as on a droplet.
    assert found["authenticator"] == "CourseNativeAuthenticator"
    assert found["admin_users"] == ["instructor", "ta"]
    assert found["native"] == {"open_signup": False, "ask_email_on_signup": True, "minimum_password_length": 8,
                               "allowed_failed_logins": 5, "seconds_before_next_try": 600}
    assert found["valid"] == {"alice": True, "eighteen-characters": False, "Bob": False, "a/b": False}
    assert found["template_paths"][0].endswith("/nativeauthenticator/templates")
    assert found["routes"]["/authorize/([^/]*)"] == "Approve" and found["routes"]["/discard/([^/]*)"] == "Discard"
    # The admins exist before anyone signs up: the instructor's hash, a reserved name nobody knows.
    assert found["accounts"]["instructor"] == {"authorized": True, "hash": hashed}
    assert found["accounts"]["ta"]["authorized"] and found["accounts"]["ta"]["hash"] != hashed
    assert set(found["accounts"]) == {"instructor", "ta"}
    # Signing up as an admin is refused, whatever the database holds; a student's name is taken.
    assert found["claimed"] == {"instructor": False, "ta": False, "alice": True}


def test_z2jh_first_use_keeps_admin_names_out_of_reach(chart, tmp_path, hashed):
    path = course(tmp_path, "hub: {admins: [instructor, ta], auth: {method: first-use}}")
    found = probe(chart, tmp_path / "pod", rendered(path, {"instructor": hashed})[z2jh.VALUES], ["instructor", "ta", "bob"])
    assert found["authenticator"] == "CourseFirstUseAuthenticator"
    assert found["accounts"]["instructor"] == {"hash": hashed} and "ta" in found["accounts"]
    # The first password typed for an admin's name is not a first use: only the instructor's works.
    assert found["claimed"] == {"instructor": False, "ta": False, "bob": True}


# ---------------------------------------------------------------------------------------------
# The image: repo2docker reads what render writes, and it is the droplet's environment


def repo2docker(folder: Path, cwd: Path) -> subprocess.CompletedProcess:
    """`repo2docker --no-build --debug FOLDER`: the Dockerfile it would build, without building it
    (run elsewhere than the checkout: repo2docker reads a config file from its working folder)."""
    return subprocess.run(["repo2docker", "--no-build", "--debug", str(folder)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


REPOS = sorted(p for p in (CASES / "repos").iterdir() if (p / "spec.yaml").is_file())


@pytest.mark.parametrize("case", REPOS, ids=lambda p: p.name)
def test_z2jh_repo2docker_builds_each_course_repository_as_the_droplet_installs_it(case, tmp_path):
    accepted = (case / "expected.txt").read_text().startswith("exit: 0")
    if (case / "repo").is_dir():
        raw = repo2docker(case / "repo", tmp_path)
        if raw.returncode != 0 or "\nFROM " not in raw.stdout:
            assert not accepted, f"repo2docker refuses a repository classimage accepts: {raw.stderr[-2000:]}"
    if not accepted:
        return
    shutil.copytree(case, tmp_path / "course")
    path = tmp_path / "course" / "spec.yaml"
    with path.open("a") as handle:
        handle.write(f"\nz2jh: {{image: {IMAGE}}}\n")
    loaded = spec.load_file(path)
    env = loaded.spec.environment
    image = tmp_path / "image"
    for name, text in rendered(path).items():
        if name.startswith(z2jh.IMAGE + "/"):
            (image / name.removeprefix(z2jh.IMAGE + "/")).parent.mkdir(parents=True, exist_ok=True)
            (image / name.removeprefix(z2jh.IMAGE + "/")).write_text(text)
    built = repo2docker(image, tmp_path)
    assert built.returncode == 0 and "\nFROM " in built.stdout, built.stderr[-2000:]
    dockerfile, log = built.stdout, built.stderr + built.stdout
    # What the Dockerfile installs: the environment file it updates from, the apt line, postBuild.
    assert re.search(r'env update -p \$\{NB_PYTHON_PREFIX\} --file "environment.yml"', dockerfile)
    used = yaml.safe_load((image / "environment.yml").read_text())
    python = re.search(r"Building conda environment for python=([0-9.]+)", log).group(1)
    assert python == (env.python or z2jh.DROPLET_PYTHON)
    assert used["channels"] == list(env.conda.channels)
    conda = [d for d in used["dependencies"] if isinstance(d, str) and not d.startswith(("python=", "pip"))]
    (pip,) = [d["pip"] for d in used["dependencies"] if isinstance(d, dict)]
    assert conda == list(env.conda.packages)
    assert pip == [*env.pip, z2jh.NBGITPULLER] or pip == list(env.pip)
    apt = re.search(r"apt-get install --yes --no-install-recommends ([^&\n]*)&&", dockerfile)
    assert sorted(apt.group(1).split() if apt else []) == sorted(env.apt)
    assert ("RUN ./postBuild" in dockerfile) == (env.post_build is not None)


def test_z2jh_the_image_has_the_droplets_python_and_nbgitpuller(tmp_path):
    """What a droplet has that the spec does not say, from TLJH 2.0.0's own release."""
    tljh = unpack(TLJH_ARCHIVE, tmp_path)
    assert re.search(r'^MINIFORGE_VERSION = "24\.7\.1-[0-9]+"$', (tljh / "tljh/installer.py").read_text(), re.M)
    assert re.search(r"miniforge 24\.7\.1-0 \(Python 3\.12\)", (tljh / "docs/reference/changelog.md").read_text())
    assert z2jh.DROPLET_PYTHON == "3.12"
    extras = (tljh / "tljh/requirements-user-env-extras.txt").read_text().split()
    assert z2jh.NBGITPULLER in extras


# ---------------------------------------------------------------------------------------------
# The image workflow


@pytest.fixture
def repository(tmp_path) -> Path:
    shutil.copytree(CASES / "tljh" / "from-repo", tmp_path / "course")
    with (tmp_path / "course" / "spec.yaml").open("a") as handle:
        handle.write(f"\nz2jh: {{image: {IMAGE}}}\n")
    return tmp_path / "course"


def test_z2jh_image_workflow_passes_githubs_schema_and_zizmor(repository):
    result = cli("render", str(repository / "spec.yaml"), "--target", "z2jh", "--out", str(repository.parent / "b"),
                 "--workflows", str(repository))
    assert result.returncode == 0, result.stderr.decode()
    folder = repository / workflows.FOLDER
    assert sorted(p.name for p in folder.iterdir()) == [f"{workflows.IMAGE_NAME}.yml"]
    path = folder / f"{workflows.IMAGE_NAME}.yml"
    checked = subprocess.run(["check-jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    audit = subprocess.run(["zizmor", "--offline", "--persona", "auditor", str(folder)], capture_output=True, text=True)
    assert audit.returncode == 0 and "No findings" in audit.stdout, audit.stdout + audit.stderr
    flow = yaml.load(path.read_text(), Loader=yaml.BaseLoader)
    job = flow["jobs"]["image"]
    assert flow["permissions"] == {"contents": "read"} and job["environment"] == "classimage-image"
    assert flow["on"]["push"]["paths"][:3] == ["spec.yaml", "repo/binder/**", "repo/.binder/**"]
    for step in job["steps"]:
        if "uses" in step:
            assert re.fullmatch(r"[\w./-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
    build = job["steps"][-1]
    assert build["uses"] == workflows.REPO2DOCKER[0]
    assert build["with"]["DOCKER_REGISTRY"] == "registry.digitalocean.com"
    assert build["with"]["IMAGE_NAME"] == "geo101/underworld"
    assert build["with"]["FORCE_REPO2DOCKER_VERSION"] == z2jh.REPO2DOCKER
    assert build["with"]["ADDITIONAL_TAG"] == "${{ steps.files.outputs.tag }}"


def test_z2jh_the_workflows_script_finds_the_tag_the_values_name(repository, tmp_path):
    """The script step, run for real (classimage from this checkout): the files it leaves for the
    action are the rendered image files, and the tag it outputs is the one in the values."""
    cli("render", str(repository / "spec.yaml"), "--target", "z2jh", "--out", str(tmp_path / "b"),
        "--workflows", str(repository))
    flow = yaml.safe_load((repository / workflows.FOLDER / f"{workflows.IMAGE_NAME}.yml").read_text())
    step = next(s for s in flow["jobs"]["image"]["steps"] if s.get("id") == "files")
    workspace, runner = tmp_path / "workspace", tmp_path / "runner"
    runner.mkdir()
    shutil.copytree(repository, workspace / "course")
    output = tmp_path / "output"
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "RUNNER_TEMP": str(runner),
           "GITHUB_OUTPUT": str(output), "PYTHONPATH": str(REPO), "HOME": str(tmp_path),
           "CLASSIMAGE_SECRETS": str(tmp_path / "secrets"), **step["env"]}
    result = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=workspace, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in workspace.iterdir()) == ["binder"]
    values = yaml.safe_load((runner / "classimage" / z2jh.VALUES).read_text())
    assert output.read_text() == f"tag={values['singleuser']['image']['tag']}\n"
    loaded = spec.load_file(repository / "spec.yaml")
    assert {p.name: p.read_text() for p in (workspace / "binder").iterdir()} == z2jh.image_files(loaded.spec)
