#!/usr/bin/env python3
"""How long `python -m classimage validate` takes, and how much memory it uses, on every kind of bad
input: the fixture table of bad specs (tests/cases/validate), the course repositories with problems
(tests/cases/repos), and inputs made here (devices, a FIFO, a 10 MB file, random bytes, an alias
bomb, nesting 3000 deep, a NUL). Each run is a cold process; prints each, then the slowest and the
largest. Asserts nothing.

    python3 benchmarks/badinput.py
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CASES = REPO / "tests" / "cases"


def made(folder: Path) -> list[tuple[str, Path]]:
    inputs = [("/dev/zero", Path("/dev/zero")), ("/dev/urandom", Path("/dev/urandom"))]
    fifo = folder / "fifo.yaml"
    os.mkfifo(fifo)
    inputs.append(("a FIFO", fifo))
    cases = {
        "10 MB of text": b"course:\n" + b"  # padding\n" * (10 * 1024 * 1024 // 12),
        "1 MiB of random bytes": os.urandom(1 << 20),
        "alias bomb": b"a: &a [x, x, x, x, x, x, x, x, x]\n" + b"".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n".encode() for i in range(8)),
        "nesting 3000 deep": b"course: " + b"[" * 3000 + b"]" * 3000 + b"\n",
        "a NUL byte": b"course: {name: X, slug: xx}\nhub: {admins: [a\x00]}\n",
        "100,000 keys": b"course:\n" + b"".join(b"  k%d: 1\n" % i for i in range(100_000))[:1_000_000],
    }
    for name, content in cases.items():
        path = folder / (name.replace(" ", "-") + ".yaml")
        path.write_bytes(content)
        inputs.append((name, path))
    return inputs


def measure(spec: Path) -> tuple[float, int, int]:
    """(seconds, exit status, peak resident memory in KiB) of one cold `validate`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "classimage", "validate", str(spec)], cwd=spec.parent,
                            capture_output=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    elapsed = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, result.returncode, max(peak, before)


def main() -> None:
    inputs = [(f"validate/{p.parent.name}", p) for p in sorted(CASES.glob("validate/*/spec.yaml"))
              if not (p.parent / "expected.txt").read_text().startswith("exit: 0")]
    inputs += [(f"repos/{p.parent.name}", p) for p in sorted(CASES.glob("repos/*/spec.yaml"))
               if not (p.parent / "expected.txt").read_text().startswith("exit: 0")]
    with tempfile.TemporaryDirectory() as scratch:
        inputs += made(Path(scratch))
        results = []
        for name, path in inputs:
            seconds, status, peak = measure(path)
            results.append((seconds, name, status, peak))
            print(f"{name:<40} exit {status}  {seconds * 1000:7.0f} ms")
    slowest = max(results)
    print(f"\n{len(results)} bad inputs; every one exit 1 or 2: {all(r[2] in (1, 2) for r in results)}")
    print(f"slowest: {slowest[1]}, {slowest[0] * 1000:.0f} ms (exit {slowest[2]})")
    print(f"peak resident memory of any one validate: {max(r[3] for r in results) / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
