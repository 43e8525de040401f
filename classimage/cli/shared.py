"""What every verb shares: the exit statuses, the usage error, how the program was run, and the spec
read from the command line (its warnings said by the verbs that check it)."""

from __future__ import annotations

import sys
from pathlib import Path

from classimage.pipeline import checks, spec, yamlsource

OK, INVALID, USAGE, FAILED, CLOUD, INTERNAL = 0, 1, 2, 3, 4, 70
DROPLET, Z2JH = "droplet", "z2jh"


class UsageError(Exception):
    pass


def program() -> str:
    """How classimage was run, for the commands it shows: the installed `classimage`, or `python -m
    classimage` (also what a test calling main() is shown)."""
    return "classimage" if Path(sys.argv[0]).name == "classimage" else "python -m classimage"


def load_spec(path: str, warnings: bool = False, target: str = DROPLET) -> spec.Loaded:
    """The spec at `path`; its warnings printed when `warnings` (the verbs that check or render
    it say them; the others, run on a spec that was, do not repeat them), those about a droplet
    only for the droplet target."""
    try:
        loaded = spec.load_file(path)
    except yamlsource.NotAFile as error:
        raise UsageError(f"cannot read {yamlsource.shown(path)}: {error} (give the course spec's YAML file)") from None
    except OSError as error:
        raise UsageError(f"cannot read {yamlsource.shown(path)}: {error.strerror or error}") from None
    for warning in loaded.warnings if warnings else ():
        if target == DROPLET or warning.path not in checks.DROPLET_ONLY:
            print(warning.format(path), file=sys.stderr)
    return loaded
