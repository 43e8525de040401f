"""Human units in the spec (`30m`, `1h30m`, `2G`) as the numbers TLJH and JupyterHub take."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^([0-9]+[smhd])+$")
_DURATION_PART = re.compile(r"([0-9]+)([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_MEMORY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([KMGT])$")
_BYTES = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def seconds(duration: str) -> int | None:
    """`1h30m` -> 5400; `never` -> None."""
    if duration == "never":
        return None
    if not _DURATION.fullmatch(duration):
        raise ValueError(f"not a duration: {duration!r}")
    return sum(int(n) * _SECONDS[unit] for n, unit in _DURATION_PART.findall(duration))


def memory_bytes(size: str) -> int:
    """`2G` -> 2147483648 (systemd's MemoryMax units, powers of 1024)."""
    match = _MEMORY.fullmatch(size)
    if not match:
        raise ValueError(f"not a memory size: {size!r}")
    return int(float(match.group(1)) * _BYTES[match.group(2)])


def suggest_memory(text: str) -> str | None:
    """What the instructor probably meant by `2 GB`, `512MiB` or `1.5g`: `2G`, `512M`, `1.5G`."""
    match = re.match(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgtKMGT])(?:i?[bB])?\s*$", text)
    if not match:
        return None
    return match.group(1) + match.group(2).upper()
