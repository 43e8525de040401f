"""classimage: one course spec in, a ready classroom JupyterHub server out.

The library's entry points (docs/design.md): `load_file(path)` reads and checks a course spec (a
`Loaded`, or `SpecError` with every problem) and `render(loaded, ...)` makes every artifact of it
as {relative path: text}. The worlds are folders: pipeline/, cloud/, droplet/.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

__version__ = "0.1.0"

# Where each module lives since the package has a folder per world (issue 22). `classimage.provision`
# and the like, in any form of import, still give the very module in its folder: code written against
# the flat layout (a user's, a branch's) keeps working, and patching either name patches the same module.
MOVED = {
    "admins": "pipeline",
    "artifacts": "pipeline",
    "checks": "pipeline",
    "environment": "pipeline",
    "files": "pipeline",
    "init": "pipeline",
    "links": "pipeline",
    "model": "pipeline",
    "network": "pipeline",
    "packer": "pipeline",
    "plan": "pipeline",
    "pricing": "pipeline",
    "problems": "pipeline",
    "reference": "pipeline",
    "schemaerrors": "pipeline",
    "sizing": "pipeline",
    "spec": "pipeline",
    "templating": "pipeline",
    "tljh": "pipeline",
    "units": "pipeline",
    "userdata": "pipeline",
    "workflows": "pipeline",
    "yamlsource": "pipeline",
    "z2jh": "pipeline",
    "provision": "droplet",
    "classdata": "droplet",
    "hubaccounts": "droplet",
    "hubguards": "droplet",
    "digitalocean": "cloud",
    "upkeep": "cloud",
}


class _Moved(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != __name__ or name not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        name = spec.name.rpartition(".")[2]
        module = importlib.import_module(f"{__name__}.{MOVED[name]}.{name}")
        spec.loader_state = module.__spec__  # the import system gives the module this spec next
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = module.__spec__.loader_state  # type: ignore[union-attr]  # its own again: its file


sys.meta_path.append(_Moved())

# The entry points, loaded when first asked for: the command line need not load what it does not use.
PUBLIC = {
    "load_file": "pipeline.spec",
    "Loaded": "pipeline.spec",
    "SpecError": "pipeline.problems",
    "render": "pipeline.artifacts",
}


def __getattr__(name: str) -> object:
    if name not in PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{PUBLIC[name]}"), name)
