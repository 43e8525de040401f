"""The cloud verbs (up, restore, status, backup, down): a class on DigitalOcean, which holds the only
state. They take the pipeline's artifacts and read the droplet's status; nothing here runs on the
droplet, and the pipeline never imports this folder.
"""

from __future__ import annotations

import importlib
from pathlib import Path


def __getattr__(name: str) -> object:
    # `classimage.cloud` was the module deploy.py is now: its names still read from here (patch them
    # in deploy). Not its submodules' names: those the import system looks for here before importing.
    if name.startswith("__") or (Path(__file__).parent / f"{name}.py").exists():
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.deploy"), name)
