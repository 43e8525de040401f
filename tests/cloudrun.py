"""classimage's command line against the DigitalOcean API stand-in, each run in a process of its own
forked from a server that has classimage and pydo loaded (tens of milliseconds a run, not a second),
so that a test can kill it for real at any request. Its time is virtual: a sleep returns at once
and moves its clock on, so a run waits for DigitalOcean (a shutdown, an attach) as long as it would,
in no time, and with a `Ticks` stand-in makes the same requests in the same order every time.

The server is this file run as a program (one per test session): it reads a request (argv,
environment, where the output goes) a line at a time, forks, answers the child's process id, and
when the child ends its exit status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass
class Run:
    code: int | None  # None: killed
    stdout: str
    stderr: str

    @property
    def returncode(self) -> int | None:
        return self.code


class VirtualTime:
    """time.sleep and time.monotonic for a run: sleeping moves the clock on at once."""

    def __init__(self):
        self.now = 1_000_000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


class Server:
    def __init__(self):
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).resolve())], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, bufsize=1,
                                        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)])))
        self.lock = threading.Lock()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=30)


_server: Server | None = None


def server() -> Server:
    global _server
    if _server is None or _server.process.poll() is not None:
        _server = Server()
    return _server


def environment(api, **extra: str) -> dict[str, str]:
    """What a run's environment holds: the stand-in's address and token, the CA it trusts, an admin's
    hash; `extra` overrides."""
    import do_standin
    from conftest import REPO

    found = dict(os.environ, PYTHONPATH=str(REPO), DIGITALOCEAN_API_URL=api.url, DIGITALOCEAN_TOKEN=do_standin.TOKEN,
                 REQUESTS_CA_BUNDLE=str(api.bundle),
                 CLASSIMAGE_ADMIN_HASHES=json.dumps({"instructor": "$2b$12$" + "a" * 53}))
    found.update(extra)
    return found


def run(api, *argv: str, kill_after: int | None = None, **extra: str) -> Run:
    """`classimage ARGV` against the stand-in `api`; `kill_after`: SIGKILL the run right after the
    stand-in has carried out its k-th request, before it answers."""
    this = server()
    with this.lock, tempfile.TemporaryDirectory() as folder:
        out, err = Path(folder) / "out", Path(folder) / "err"
        start, pid, known = len(api.requests), [], threading.Event()
        if kill_after is not None:
            def hook(count: int, method: str, path: str) -> bool:
                if count - start != kill_after:
                    return False
                known.wait(30)
                os.kill(pid[0], signal.SIGKILL)
                return True
            api.after_request = hook
        try:
            request = {"argv": list(argv), "environment": environment(api, **extra), "out": str(out), "err": str(err)}
            this.process.stdin.write(json.dumps(request) + "\n")
            pid.append(int(this.process.stdout.readline()))
            known.set()
            status = int(this.process.stdout.readline())
        finally:
            api.after_request = None
        code = os.waitstatus_to_exitcode(status)
        return Run(None if code < 0 else code, out.read_text(), err.read_text())


def _child(request: dict) -> None:
    os.environ.clear()
    os.environ.update(request["environment"])
    for stream, path in ((1, request["out"]), (2, request["err"])):
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(descriptor, stream)
        os.close(descriptor)
    import time

    clock = VirtualTime()
    time.monotonic = clock.monotonic  # type: ignore[assignment]
    time.sleep = clock.sleep  # type: ignore[assignment]
    from classimage import cli

    try:
        code = cli.main(request["argv"])
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 2
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve() -> None:
    """The server: single-threaded, so that forking it is safe."""
    from classimage import cli  # noqa: F401 (loaded once, for every run)
    from classimage.cloud import deploy, digitalocean, upkeep  # noqa: F401 (loaded once, for every run)

    import azure.core.pipeline.policies  # noqa: F401
    import pydo  # noqa: F401
    from classimage.pipeline import artifacts, spec

    # Jinja compiles each template the first time it renders: once here, not in every run.
    example = spec.load_file(HERE.parent / "examples" / "minimal.yaml")
    artifacts.render(example, {"instructor": None}, None, "warm-data")
    digitalocean.DigitalOcean("warm", "https://127.0.0.1:9")  # pydo and azure-core load their parts lazily

    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                _child(request)
            finally:
                os._exit(70)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(status, flush=True)


if __name__ == "__main__":
    serve()
