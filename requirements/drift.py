"""Print every package whose installed version differs from the lock (`name: locked -> installed`),
so a run on today's newest releases says what moved under the suite. Standard library only."""

import re
import sys
from importlib import metadata


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(lock: str) -> int:
    locked = dict(
        (canonical(m.group(1)), m.group(2))
        for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", open(lock, encoding="utf-8").read(), re.M)
    )
    installed = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    moved = [f"{name}: {locked[name]} -> {installed[name]}" for name in sorted(locked)
             if name in installed and installed[name] != locked[name]]
    new = [f"{name}: (not locked) {installed[name]}" for name in sorted(set(installed) - set(locked))
           if name not in ("pip", "setuptools", "classimage")]
    print(f"drift from {lock}: {len(moved)} moved, {len(new)} new")
    for line in moved + new:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
