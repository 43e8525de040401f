"""Files on the instructor's machine (rendered artifacts, the admins' hashes) written so that no
reader ever sees half of one: the text goes to a temporary file beside the target, which then takes
the target's name. (The programs shipped to droplets keep their own copy: they import nothing.)"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, text: str, mode: int) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
