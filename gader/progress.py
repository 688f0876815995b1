"""Progress bars for long work: on an interactive terminal only, never in logs or piped output."""

from __future__ import annotations

from typing import Any

from tqdm import tqdm


def progress(iterable: Any = None, *, enabled: bool = True, **options: Any) -> tqdm:
    """A tqdm bar on stderr that shows itself only when stderr is a terminal (and ``enabled``)."""
    return tqdm(iterable, disable=None if enabled else True, dynamic_ncols=True, **options)
