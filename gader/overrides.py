"""``--set key=value`` overrides of TOML settings, shared by the GAR and detector training configs and by
``gader eval-detector``: the value is read as TOML (``3``, ``0.5``, ``[16, 32]``, ``"all"``), and a bare word
stays a string (``frame_label_windows=all``). A dotted key (``optim.lr``) names a setting inside a section."""

from __future__ import annotations

import tomllib
from typing import Any

from gader.errors import GaderError


def parse_override(override: str) -> tuple[str, Any]:
    """``"key=value"`` -> (key, value); the key may be dotted."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise GaderError(f"override {override!r} must look like key=value")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word
    return key.strip(), value


def apply_overrides(values: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Set each override in ``values`` (a parsed TOML document), creating sections a dotted key names; returns
    ``values``. Unknown keys are left for the config's own check to name."""
    for override in overrides or []:
        key, value = parse_override(override)
        target = values
        *sections, name = key.split(".")
        for section in sections:
            target = target.setdefault(section, {})
            if not isinstance(target, dict):
                raise GaderError(f"override {override!r}: {section!r} is a setting, not a section")
        target[name] = value
    return values
