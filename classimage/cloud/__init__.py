"""The cloud verbs (up, restore, status, backup, down): a class on DigitalOcean, which holds the only
state. They take the pipeline's artifacts and read the droplet's status; nothing here runs on the
droplet, and the pipeline never imports this folder.
"""

from __future__ import annotations

import importlib
from pathlib import Path


def __getattr__(name: str) -> object:
    # `classimage.cloud` was the module deploy.py, wanted.py, actions.py, found.py and progress.py are
    # now: its names still read from here (patch them where they live). Not its submodules' names: the
    # import system asks for those here before it imports them.
    if not name.startswith("__") and not (Path(__file__).parent / f"{name}.py").exists():
        for module in ("deploy", "wanted", "actions", "found", "progress"):
            holder = importlib.import_module(f"{__name__}.{module}")
            if hasattr(holder, name):
                return getattr(holder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
