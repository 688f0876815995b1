"""Shared CLI output: JSON on stdout (machine), rich tables on stdout (human), progress on stderr."""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

import numpy as np
from rich.console import Console

# Piped into a file or a CI log, rich would fold tables at its default 80 columns and cut their headers
# ("sequen…"); there they get 160 columns unless COLUMNS says otherwise. A terminal keeps its own width.
TABLE_WIDTH_WHEN_PIPED = 160
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else TABLE_WIDTH_WHEN_PIPED)
err_console = Console(stderr=True)


def jsonable(value: Any) -> Any:
    """numpy scalars/arrays to Python, NaN/inf to None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(jsonable(value), indent=2) + "\n")
