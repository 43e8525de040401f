"""Every file `render` writes for a spec, as text by relative path: one call, pure and
deterministic, so a spec that cannot render writes nothing and the CLI only writes and prints."""

from __future__ import annotations

from collections.abc import Mapping

from classimage.pipeline import packer, plan, userdata
from classimage.pipeline.spec import Loaded

ONE_PIECE = "user-data.yaml"
USER_DATA = {plan.FULL: ONE_PIECE, plan.BAKE: "bake/user-data.yaml", plan.BOOT: "boot/user-data.yaml"}
PURPOSE = {
    plan.FULL: "one-piece: paste into droplet creation",
    plan.BAKE: "Packer's build droplet",
    plan.BOOT: "for droplets made from the snapshot",
}
PACKER = "packer"


def render(
    loaded: Loaded,
    admin_hashes: Mapping[str, str | None] | None = None,
    status_token_sha256: str | None = None,
    volume: str | None = None,
) -> dict[str, str]:
    """{relative path: text}: the user data of every stage and the Packer template. `admin_hashes`:
    the bcrypt hash of each admin's password (classimage.pipeline.admins); an admin without one is reserved.
    `volume`: the DigitalOcean volume that holds the class's data (the cloud verbs know which)."""
    files = {
        USER_DATA[stage]: userdata.render(loaded.spec, loaded.digest, stage, admin_hashes, status_token_sha256, volume)
        for stage in plan.STAGES
    }
    files.update({f"{PACKER}/{name}": text for name, text in packer.files(loaded.spec).items()})
    return files
