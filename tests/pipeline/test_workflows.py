"""The GitHub workflows render writes for a course repository: valid for GitHub (its schema, as
check-jsonschema vendors it), clean for zizmor's audits, and the health check's script run for real
against a local server playing the hub."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

import course_repo
import playhub
from conftest import CASES, REPO, cli, in_a_network_of_its_own
from classimage import release
from classimage.droplet import provision
from classimage.pipeline import spec, workflows


@pytest.fixture
def repository(tmp_path) -> Path:
    """A course repository: the from-repo case (its spec beside its binder files)."""
    shutil.copytree(CASES / "tljh" / "from-repo", tmp_path / "course")
    return tmp_path / "course"


def render(repository: Path, spec_name: str = "spec.yaml") -> dict[str, Path]:
    result = cli("render", str(repository / spec_name), "--out", str(repository / "build"),
                 "--workflows", str(repository))
    assert result.returncode == 0, result.stderr.decode()
    return {p.stem: p for p in (repository / workflows.FOLDER).glob("*.yml")}


def test_workflows_validate_against_githubs_schema(repository):
    files = render(repository)
    assert sorted(files) == sorted(workflows.NAMES)
    result = subprocess.run(["check-jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, files.values())],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_finds_nothing(repository):
    render(repository)
    result = subprocess.run(["zizmor", "--offline", "--persona", "auditor", str(repository / workflows.FOLDER)],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "No findings" in result.stdout, result.stdout + result.stderr


def test_what_each_workflow_does(repository):
    files = {name: yaml.load(path.read_text(), Loader=yaml.BaseLoader) for name, path in render(repository).items()}
    validate, snapshot, deploy, health, backup = (files[name] for name in workflows.NAMES)
    assert set(validate["on"]) == {"pull_request"}
    assert set(snapshot["on"]) == {"workflow_dispatch"}  # the deploy workflow bakes when needed
    assert snapshot["concurrency"] == {"group": "classimage-snapshot", "cancel-in-progress": "false"}
    job = snapshot["jobs"]["snapshot"]
    assert job["steps"][-1]["env"]["DIGITALOCEAN_TOKEN"] == "${{ secrets.DIGITALOCEAN_TOKEN }}"
    # deploy: "commit and the server follows", one at a time, least privilege, secrets in its environment
    assert deploy["on"]["push"]["paths"][:3] == ["spec.yaml", "repo/binder/**", "repo/.binder/**"]
    assert deploy["concurrency"] == {"group": "classimage-deploy", "cancel-in-progress": "false"}
    assert deploy["permissions"] == {"contents": "read"}
    job = deploy["jobs"]["deploy"]
    assert job["environment"] == "classimage-deploy"
    bake, up = job["steps"][-2:]
    assert "build \"$SPEC\" --if-missing" in bake["run"] and up["run"] == 'python -m classimage up "$SPEC"'
    assert up["env"]["CLASSIMAGE_ADMIN_HASHES"] == "${{ secrets.CLASSIMAGE_ADMIN_HASHES }}"
    assert "DIGITALOCEAN_TOKEN" not in validate["jobs"]["validate"]["steps"][-1].get("env", {})
    assert health["on"]["schedule"] == [{"cron": "*/30 * * * *"}] and health["permissions"] == {}
    # backup: nightly, never during a deploy (the same queue), the token in its own environment
    assert backup["on"]["schedule"] == [{"cron": "17 3 * * *"}] and backup["permissions"] == {"contents": "read"}
    assert backup["concurrency"] == deploy["concurrency"]
    job = backup["jobs"]["backup"]
    assert job["environment"] == "classimage-backup" and job["steps"][-1]["run"] == 'python -m classimage backup "$SPEC"'
    assert set(job["steps"][-1]["env"]) == {"SPEC", "DIGITALOCEAN_TOKEN"}  # no admin hashes: it makes no droplet
    for workflow in files.values():
        for step in (s for j in workflow["jobs"].values() for s in j["steps"]):
            if "uses" in step:
                assert step["uses"].split("@")[1] in (workflows.CHECKOUT[0].split("@")[1], workflows.SETUP_PYTHON[0].split("@")[1])
    scripts = [s.get("run", "") for w in files.values() for j in w["jobs"].values() for s in j["steps"]]
    commands = {line.split()[0] for script in scripts for line in script.splitlines() if line.strip()}
    assert not commands & {"ssh", "sshpass", "scp"}  # the seed class's health check logged in as root


def installs(workflow: dict) -> list[str]:
    return [step["env"]["CLASSIMAGE"] for job in workflow["jobs"].values() for step in job["steps"]
            if "CLASSIMAGE" in step.get("env", {})]


def test_workflows_install_classimage_pinned_to_the_commit_that_rendered_them(repository):
    files = {name: yaml.load(path.read_text(), Loader=yaml.BaseLoader) for name, path in render(repository).items()}
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    pinned = f"classimage @ git+{release.SOURCE}@{head}"
    assert installs(files["classimage-validate"]) == installs(files["classimage-snapshot"]) == [pinned]
    assert installs(files["classimage-deploy"]) == installs(files["classimage-backup"]) == \
        [pinned.replace("classimage @", "classimage[cloud] @")]
    assert installs(files["classimage-health"]) == []  # it only asks the hub
    assert not any("classimage==" in path.read_text() for path in (repository / workflows.FOLDER).glob("*.yml"))


def test_the_source_is_the_specs_to_choose_and_must_be_pinned(repository):
    spec_file = repository / "spec.yaml"
    wheel = "./tools/classimage-0.1.0-py3-none-any.whl"
    spec_file.write_text(spec_file.read_text() + f"workflows:\n  classimage: {wheel}\n")
    files = {name: yaml.load(path.read_text(), Loader=yaml.BaseLoader) for name, path in render(repository).items()}
    assert installs(files["classimage-validate"]) == [wheel]
    for unpinned in ("classimage==0.1.0", "classimage", "classimage @ git+https://github.com/classimage/classimage@main",
                     "./tools/../../evil/classimage-0.1.0-py3-none-any.whl", "https://example.org/classimage.whl"):
        spec_file.write_text(spec_file.read_text().rsplit("workflows:", 1)[0] + f"workflows:\n  classimage: '{unpinned}'\n")
        result = cli("validate", str(spec_file))
        assert result.returncode == 1 and b"workflows.classimage" in result.stderr, unpinned


def test_without_a_known_commit_rendering_workflows_says_what_to_set(monkeypatch, repository):
    monkeypatch.setattr(release, "commit", lambda: None)
    loaded = spec.load_file(repository / "spec.yaml")
    with pytest.raises(workflows.WorkflowError, match="set workflows.classimage"):
        workflows.render(loaded.spec, repository / "spec.yaml", repository)


def test_classimages_own_workflows_are_valid_and_clean():
    """.github/workflows/ (release, drift): GitHub's schema, zizmor's audits, actions pinned to commits,
    no permissions by default; releases by trusted publishing only."""
    folder = REPO / ".github" / "workflows"
    own = sorted(folder.glob("*.yml"))
    assert {p.name for p in own} == {"release.yml", "drift.yml"}
    result = subprocess.run(["check-jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, own)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    audit = subprocess.run(["zizmor", "--offline", "--persona", "auditor", str(folder)], capture_output=True, text=True)
    assert audit.returncode == 0 and "No findings" in audit.stdout, audit.stdout + audit.stderr
    for path in own:
        document = yaml.load(path.read_text(), Loader=yaml.BaseLoader)
        assert document["permissions"] == {}, path.name
        for job in document["jobs"].values():
            for step in job["steps"]:
                if "uses" in step:
                    assert re.fullmatch(r"[\w./-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
    release_workflow = folder / "release.yml"
    publish = yaml.load(release_workflow.read_text(), Loader=yaml.BaseLoader)["jobs"]["publish"]
    assert publish["permissions"] == {"id-token": "write"} and publish["environment"]["name"] == "pypi"
    assert "password" not in release_workflow.read_text()  # no token: PyPI trusts the workflow itself
    drift = (folder / "drift.yml").read_text()
    assert "CLASSIMAGE_CI_NEWEST=1 bash .ci/run" in drift and "schedule:" in drift


def test_spec_outside_the_repository_or_with_odd_characters_is_refused(repository, tmp_path):
    outside = cli("render", str(repository / "spec.yaml"), "--out", str(tmp_path / "b"), "--workflows", str(tmp_path / "other"))
    assert outside.returncode == 2 and b"not inside the course repository" in outside.stderr
    odd = repository / "${{ github.token }}.yaml"
    shutil.copy(repository / "spec.yaml", odd)
    result = cli("render", str(odd), "--out", str(tmp_path / "b"), "--workflows", str(repository))
    assert result.returncode == 2 and b"a workflow cannot hold safely" in result.stderr
    assert not (repository / workflows.FOLDER).exists()


EXPRESSIONS = Path(__file__).resolve().parents[1] / "expressions"  # GitHub's evaluator (npm ci, as .ci/run does)


@pytest.fixture(scope="module")
def github_expression():
    """Evaluates an Actions expression as GitHub does: @actions/expressions, GitHub's own evaluator."""
    if not (EXPRESSIONS / "node_modules" / "@actions" / "expressions").is_dir():
        pytest.fail(f"GitHub's expression evaluator is not installed: npm ci --prefix {EXPRESSIONS} (.ci/run does)")
    process = subprocess.Popen(["node", str(EXPRESSIONS / "evaluate.mjs")], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)

    def evaluate(expression: str, github: dict) -> bool:
        process.stdin.write(json.dumps({"expression": expression, "contexts": {"github": github}}) + "\n")
        process.stdin.flush()
        answer = json.loads(process.stdout.readline())
        assert "error" not in answer, (expression, answer)
        return answer["truthy"]

    yield evaluate
    process.stdin.close()
    process.wait(timeout=30)


def event(name: str, ref: str, default_branch: str | None = "main") -> dict:
    """The github context of a run: a schedule's event names no repository (GitHub's payload has none)."""
    kind, _, short = ref.removeprefix("refs/").partition("/")
    payload = {"schedule": "17 3 * * *"} if default_branch is None else {"repository": {"default_branch": default_branch}}
    return {"event_name": name, "ref": ref, "ref_name": short, "ref_type": {"heads": "branch", "tags": "tag"}[kind],
            "event": payload}


RUNS = [  # (what ran, its github context, may a job holding the token run?)
    ("push to main", event("push", "refs/heads/main"), True),
    ("push of a tag named main", event("push", "refs/tags/main"), False),
    ("push to another branch", event("push", "refs/heads/feature"), False),
    ("push to branch x/main", event("push", "refs/heads/x/main"), False),
    ("by hand on main", event("workflow_dispatch", "refs/heads/main"), True),
    ("by hand on a tag named main", event("workflow_dispatch", "refs/tags/main"), False),
    ("by hand on main, default branch trunk", event("workflow_dispatch", "refs/heads/main", "trunk"), False),
    ("by hand on trunk, the default", event("workflow_dispatch", "refs/heads/trunk", "trunk"), True),
    ("schedule", event("schedule", "refs/heads/main", None), True),
]


def test_only_the_default_branch_runs_a_job_that_holds_the_token(repository, github_expression):
    """Every job given a secret runs only on the default branch itself, as GitHub evaluates its `if`:
    never for a pushed tag or a run by hand on a tag that is named like the branch."""
    render(repository)
    with (repository / "spec.yaml").open("a") as handle:  # and the z2jh target's image workflow beside them
        handle.write("\nz2jh: {image: registry.digitalocean.com/geo101/underworld}\n")
    image = cli("render", str(repository / "spec.yaml"), "--target", "z2jh", "--out", str(repository.parent / "z2jh"),
                "--workflows", str(repository))
    assert image.returncode == 0, image.stderr.decode()
    files = {p.stem: yaml.load(p.read_text(), Loader=yaml.BaseLoader) for p in (repository / workflows.FOLDER).glob("*.yml")}
    guarded = 0
    for name, workflow in files.items():
        triggers = set(workflow["on"])
        for job in workflow["jobs"].values():
            if "secrets." not in json.dumps(job):
                continue
            guarded += 1
            condition = job["if"].removeprefix("${{").removesuffix("}}").strip()
            for what, github, allowed in RUNS:
                if github["event_name"] in triggers:
                    assert github_expression(condition, github) is allowed, (name, what, condition)
    assert guarded == 4  # snapshot, deploy, backup; the image (the registry's password)
    # The check it replaces passed a tag named main: the evaluator tells the two apart.
    assert github_expression("github.ref_name == github.event.repository.default_branch", RUNS[1][1]) is True
    # And a pushed tag does not start the deploy at all (GitHub checks no `paths` for tags).
    for name in ("classimage-deploy", workflows.IMAGE_NAME):
        assert files[name]["on"]["push"]["branches"] == ["**"] and "tags" not in files[name]["on"]["push"]


def test_the_health_check_script_fails_unless_the_hub_is_ready(repository):
    health = yaml.safe_load(render(repository)["classimage-health"].read_text())
    step = health["jobs"]["health"]["steps"][0]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), playhub.Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hub = f"http://127.0.0.1:{server.server_port}"

    def check(url):
        env = {"PATH": "/usr/bin:/bin", "HUB_URL": url, "STATUS_PATH": step["env"]["STATUS_PATH"]}
        return subprocess.run(["bash", "-e", "-c", step["run"]], env=env, capture_output=True, text=True)

    try:
        playhub.Hub.state = "ready"
        ok = check(hub)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "provisioning: ready" in ok.stdout and "JupyterHub 5.2.1" in ok.stdout
        playhub.Hub.state = "failed"
        failed = check(hub)
        assert failed.returncode == 1 and "::error::provisioning is failed at step pip-packages" in failed.stdout
        assert check("").returncode == 1  # no address: says how to set one
    finally:
        server.shutdown()
        server.server_close()
    down = check(hub)  # nothing answers any more
    assert down.returncode != 0


# -- the health check over HTTPS ---------------------------------------------------------------------------------
# Each run in a network namespace of its own (bubblewrap), whose loopback is the class's address, whose /etc/hosts
# is the DNS (read for real by getent and curl) and whose trusted CAs (CURL_CA_BUNDLE, read by curl) are what the
# runner trusts: Let's Encrypt's stand-in is a test CA. The play hub answers on port 443 (HTTPS, the certificate
# given), on port 80 as classimage's page does while TLJH installs (the status; 503 for the rest), or not at all.

NAME = "hub.course.test"
SANDBOXED_HUB = r"""
import http.server, json, ssl, subprocess, sys, threading
sys.path.insert(0, sys.argv[1])
from playhub import Hub
ports, Hub.state, cert, key, status_path, name, trusted = sys.argv[2:9]

for port in [int(p) for p in ports.split(",") if p]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), type("Page", (Hub,), {"page": port == 80}))
    if port == 443:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
result = subprocess.run(["bash", "-e", "-c", open("/tmp/sandbox/health.sh").read()], stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True,
                        env={"PATH": "/usr/bin:/bin", "HUB_NAME": name, "STATUS_PATH": status_path,
                             "CURL_CA_BUNDLE": trusted})
print(json.dumps({"code": result.returncode, "out": result.stdout}))
"""


@pytest.fixture(scope="module")
def https_health(tmp_path_factory):
    """The health check rendered for a spec with https.hostname, and the CAs of the sandbox."""
    if not shutil.which("bwrap"):
        pytest.fail("bubblewrap (bwrap) is needed: apt-get install bubblewrap (.ci/run does)")
    folder = tmp_path_factory.mktemp("health-https")
    repository = folder / "course"
    shutil.copytree(CASES / "tljh" / "from-repo", repository)
    with (repository / "spec.yaml").open("a") as spec_file:
        spec_file.write(f"https: {{hostname: {NAME}, email: instructor@course.test}}\n")
    step = yaml.safe_load(render(repository)["classimage-health"].read_text())["jobs"]["health"]["steps"][0]
    sandbox = folder / "sandbox"
    sandbox.mkdir()
    (sandbox / "health.sh").write_text(step["run"])
    (sandbox / "hub.py").write_text(SANDBOXED_HUB)
    course_repo.TestCA(sandbox / "issuer", address=NAME)  # what Let's Encrypt would issue for the name
    course_repo.TestCA(sandbox / "other", address=NAME)  # a CA the runner does not trust
    course_repo.TestCA(sandbox / "misnamed", address="other.course.test")  # trusted, for another name
    return step, sandbox


def health_over_https(https_health, *, resolves: bool = True, ports: str = "443", state: str = "ready",
                      served: str = "issuer", trusted: str = "issuer") -> tuple[int, str]:
    """The health check's exit code and output, run by bash against the sandbox's play hub."""
    step, sandbox = https_health
    said = in_a_network_of_its_own(
        sandbox, [NAME] if resolves else [],
        ["/tmp/sandbox/hub.py", str(Path(__file__).parents[1]), ports, state, f"/tmp/sandbox/{served}/server.pem",
         f"/tmp/sandbox/{served}/server.key", step["env"]["STATUS_PATH"], step["env"]["HUB_NAME"],
         f"/tmp/sandbox/{trusted}/ca.pem"])
    return said["code"], said["out"]


def test_https_health_check_by_name_with_the_certificate_checked(https_health):
    step, _ = https_health
    assert step["env"] == {"HUB_NAME": NAME, "STATUS_PATH": provision.SERVICE_PATH} == {"HUB_NAME": NAME,
                                                                                "STATUS_PATH": playhub.STATUS_PATH}
    code, out = health_over_https(https_health)
    assert code == 0, out
    assert "JupyterHub 5.2.1" in out and "provisioning: ready" in out and "::error::" not in out


def test_https_health_check_says_the_name_does_not_resolve(https_health):
    code, out = health_over_https(https_health, resolves=False)
    assert code == 1
    assert out.strip() == (f"::error::{NAME} does not resolve: create the DNS record {NAME} A (the class's address: "
                           "classimage status prints it)")


@pytest.mark.parametrize("served, trusted, verdict", [
    ("other", "issuer", "curl: (60) SSL certificate problem: unable to get local issuer certificate"),
    ("misnamed", "misnamed", f"curl: (60) SSL: no alternative certificate subject name matches target host name '{NAME}'"),
])
def test_https_health_check_tells_an_uncertified_class_that_is_up_from_one_that_is_not(https_health, served, trusted,
                                                                                        verdict):
    problem = f"{NAME} has no valid certificate ({verdict})"
    code, out = health_over_https(https_health, served=served, trusted=trusted)
    assert code == 1, out
    assert f"{problem}: checking the hub at 127.0.0.1, where {NAME} resolves, its certificate unchecked" in out
    assert "JupyterHub 5.2.1" in out and "provisioning: ready" in out
    assert out.strip().endswith(f"::error::{problem}; at 127.0.0.1 the hub answers and is ready: the class is up, "
                                "but not by name over HTTPS"), out
    code, out = health_over_https(https_health, served=served, trusted=trusted, state="failed")
    assert code == 1 and "::error::provisioning is failed at step pip-packages" in out
    assert out.strip().endswith(f"::error::{problem}; at 127.0.0.1 the hub is not ready either (above)"), out


def test_https_health_check_says_nothing_answers_https(https_health):
    """The name resolves, but nothing listens on 443: classimage's own page on port 80 (TLJH still
    installing) is read at the address, or nothing answers at all."""
    problem = f"{NAME} resolves to 127.0.0.1, but nothing answers HTTPS there (curl: (7) Failed to connect to {NAME} port 443"
    for ports in ("80", ""):
        code, out = health_over_https(https_health, ports=ports, state="running")
        assert code == 1 and problem in out, out
        assert ": checking the hub at http://127.0.0.1\n" in out
        assert out.strip().endswith("; at 127.0.0.1 the hub is not ready either (above)"), out


def test_the_health_check_passes_shellcheck(repository, https_health):
    """Both of its forms: by the hub's name (https.hostname) and by the repository variable."""
    plain = yaml.safe_load(render(repository)["classimage-health"].read_text())["jobs"]["health"]["steps"][0]
    for step in (plain, https_health[0]):
        result = subprocess.run(["shellcheck", "--shell=bash", "--severity=style", "-"], input=step["run"],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout
