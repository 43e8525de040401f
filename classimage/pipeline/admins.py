"""The admins' passwords, on the instructor's machine. Only a bcrypt hash of each ever leaves it
(bcrypt is what NativeAuthenticator and FirstUseAuthenticator store and check): it travels in the
user data to the droplet, where the admin's account is made, approved, before the hub first takes
signups. So no one but the holder of the password can become an admin, and no droplet needs SSH.

Hashes are kept outside the course repository, like a token: in
`$XDG_CONFIG_HOME/classimage/SLUG/admins.yaml` (default ~/.config; CLASSIMAGE_SECRETS names another
folder), mode 0600; or, for a CI job, in the environment variable CLASSIMAGE_ADMIN_HASHES (the same
YAML text, from a secret store). Rendering reads them, so it stays deterministic for the same spec
and the same hashes.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

import yaml

from classimage.pipeline.files import write_atomically

ENVIRONMENT = "CLASSIMAGE_ADMIN_HASHES"
FOLDER = "CLASSIMAGE_SECRETS"
BCRYPT = re.compile(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")
COST = 12
MIN_LENGTH = 12


class AdminError(Exception):
    pass


def store_path(slug: str) -> Path:
    base = os.environ.get(FOLDER) or Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "classimage"
    return Path(base) / slug / "admins.yaml"


def parse(text: str, where: str) -> dict[str, str]:
    """{name: bcrypt hash} from YAML text; anything else is an AdminError naming `where`."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as error:
        raise AdminError(f"{where} is not YAML: {error}") from None
    if not isinstance(data, dict):
        raise AdminError(f"{where} must map admin names to bcrypt hashes")
    for name, hashed in data.items():
        if not isinstance(name, str) or not isinstance(hashed, str) or not BCRYPT.fullmatch(hashed):
            raise AdminError(
                f"{where}: {name!r} does not map to a bcrypt hash ($2b$12$...); "
                "set it again with `python -m classimage admin-password SPEC`"
            )
    return data


def load(slug: str) -> tuple[dict[str, str], str]:
    """The hashes for course `slug`, and where they came from."""
    if os.environ.get(ENVIRONMENT) is not None:
        return parse(os.environ[ENVIRONMENT], f"${ENVIRONMENT}"), f"${ENVIRONMENT}"
    path = store_path(slug)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, str(path)
    except OSError as error:
        raise AdminError(f"cannot read {path}: {error.strerror}") from None
    return parse(text, str(path)), str(path)


def for_admins(names: tuple[str, ...], slug: str) -> dict[str, str | None]:
    """Each admin's hash, or None for an admin without a password yet."""
    hashes, _ = load(slug)
    return {name: hashes.get(name) for name in names}


def save(slug: str, updates: dict[str, str]) -> Path:
    """Add or replace hashes in the course's store (0600, in a 0700 folder), atomically."""
    path = store_path(slug)
    if os.environ.get(ENVIRONMENT) is not None:
        raise AdminError(f"${ENVIRONMENT} is set: the hashes come from there; unset it to store new ones in {path}")
    current, _ = load(slug)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = "# Admin password hashes for classimage (bcrypt). Keep this file out of repositories.\n" + yaml.safe_dump(
        {**current, **updates}, sort_keys=True
    )
    write_atomically(path, text, 0o600)
    return path


def weakness(password: str, name: str, minimum: int) -> str | None:
    """Why `password` will not do for an admin, or None."""
    needed = max(MIN_LENGTH, minimum)
    if len(password) < needed:
        return f"it has {len(password)} characters; an admin's password needs at least {needed}"
    if password.strip() != password or "\n" in password:
        return "it starts or ends with a space or holds a line break"
    if len(set(password)) < 4 or name.lower() in password.lower():
        return "it is too easy to guess (few different characters, or the admin's own name)"
    return None


def generate() -> str:
    """A password nobody will guess (128 random bits, as text a person can copy)."""
    return secrets.token_urlsafe(16)


def hash_password(password: str) -> str:
    import bcrypt

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(COST)).decode()
