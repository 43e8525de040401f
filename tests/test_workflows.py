"""The GitHub workflows render writes for a course repository: valid for GitHub (its schema, as
check-jsonschema vendors it), clean for zizmor's audits, and the health check's script run for real
against a local server playing the hub."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from conftest import CASES, cli
from classimage import provision, workflows


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
    validate, snapshot, health = (files[name] for name in workflows.NAMES)
    assert set(validate["on"]) == {"pull_request"}
    assert snapshot["on"]["push"]["paths"][:3] == ["spec.yaml", "repo/binder/**", "repo/.binder/**"]
    assert snapshot["concurrency"] == {"group": "classimage-snapshot", "cancel-in-progress": "false"}
    job = snapshot["jobs"]["snapshot"]
    assert job["if"] == "github.ref_name == github.event.repository.default_branch"
    assert job["steps"][-1]["env"]["DIGITALOCEAN_TOKEN"] == "${{ secrets.DIGITALOCEAN_TOKEN }}"
    assert health["on"]["schedule"] == [{"cron": "*/30 * * * *"}] and health["permissions"] == {}
    for workflow in files.values():
        for step in (s for j in workflow["jobs"].values() for s in j["steps"]):
            if "uses" in step:
                assert step["uses"].split("@")[1] in (workflows.CHECKOUT[0].split("@")[1], workflows.SETUP_PYTHON[0].split("@")[1])
    scripts = [s.get("run", "") for w in files.values() for j in w["jobs"].values() for s in j["steps"]]
    commands = {line.split()[0] for script in scripts for line in script.splitlines() if line.strip()}
    assert not commands & {"ssh", "sshpass", "scp"}  # the seed class's health check logged in as root


def test_spec_outside_the_repository_or_with_odd_characters_is_refused(repository, tmp_path):
    outside = cli("render", str(repository / "spec.yaml"), "--out", str(tmp_path / "b"), "--workflows", str(tmp_path / "other"))
    assert outside.returncode == 2 and b"not inside the course repository" in outside.stderr
    odd = repository / "${{ github.token }}.yaml"
    shutil.copy(repository / "spec.yaml", odd)
    result = cli("render", str(odd), "--out", str(tmp_path / "b"), "--workflows", str(repository))
    assert result.returncode == 2 and b"a workflow cannot hold safely" in result.stderr
    assert not (repository / workflows.FOLDER).exists()


class Hub(http.server.BaseHTTPRequestHandler):
    """Plays the class hub for the health check: /hub/health, /hub/api and the status service."""

    state = "ready"

    def do_GET(self):
        answers = {"/hub/health": {}, "/hub/api": {"version": "5.2.1"},
                   f"/services/{provision.SERVICE}/": {"state": Hub.state, "stage": "full", "failed_step":
                                                         None if Hub.state == "ready" else "pip-packages"}}
        if self.path not in answers:
            self.send_error(404)
            return
        body = json.dumps(answers[self.path]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_health_check_script_fails_unless_the_hub_is_ready(repository):
    health = yaml.safe_load(render(repository)["classimage-health"].read_text())
    step = health["jobs"]["health"]["steps"][0]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hub = f"http://127.0.0.1:{server.server_port}"

    def check(url):
        env = {"PATH": "/usr/bin:/bin", "HUB_URL": url, "STATUS_PATH": step["env"]["STATUS_PATH"]}
        return subprocess.run(["bash", "-e", "-c", step["run"]], env=env, capture_output=True, text=True)

    try:
        Hub.state = "ready"
        ok = check(hub)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "provisioning: ready" in ok.stdout and "JupyterHub 5.2.1" in ok.stdout
        Hub.state = "failed"
        failed = check(hub)
        assert failed.returncode == 1 and "::error::provisioning is failed at step pip-packages" in failed.stdout
        assert check("").returncode == 1  # no address: says how to set one
    finally:
        server.shutdown()
        server.server_close()
    down = check(hub)  # nothing answers any more
    assert down.returncode != 0
