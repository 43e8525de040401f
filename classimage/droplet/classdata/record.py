"""The record (/var/lib/classimage/data.json): what classimage-class-data did and what it waits for,
which the status service shows the instructor; also the admins and the device chosen at
provisioning, which every later boot reads back."""

from __future__ import annotations

import json

from .shared import now, write_json

RECORD = "/var/lib/classimage/data.json"  # what the status service tells the instructor about the class's data
KEPT = 20  # warnings the record keeps, the newest


def after_mount(device: str, said: list[str]) -> None:
    """What this mount said; its warnings also join those kept from earlier ones (the mount at the
    next boot, or the one right after `prepare`, says nothing of a home given back before)."""
    kept = read_record().get("warnings") or []
    for line in said:
        if line.startswith("WARNING") and line not in [w["message"] for w in kept]:
            kept.append({"at": now(), "message": line})
    update_record({"device": device, "mounted": now(), "notes": said, "error": None, "warnings": kept[-KEPT:]})


def read_record() -> dict:
    try:
        with open(RECORD) as handle:
            return json.load(handle)
    except (FileNotFoundError, ValueError):
        return {}


def update_record(changes: dict[str, object]) -> None:
    data = read_record()
    data.update(changes)
    write_json(RECORD, data)


def read_admins() -> list[str]:
    return read_record().get("admins", [])
