"""Assembling one service instance from settings: store, keys, inference, galleries, core."""

from __future__ import annotations

import logging
import sys

from service.core import MatchingCore
from service.gallery.manager import GalleryManager
from service.gallery.store import SQLiteStore, Store
from service.inference import create_backend
from service.observability import Metrics
from service.security import KeyRing
from service.settings import Settings

log = logging.getLogger("gader.service")


def open_store(settings: Settings) -> Store:
    if settings.store == "sqlite":
        return SQLiteStore(settings.sqlite_path)
    from service.gallery.redis_store import RedisStore

    return RedisStore(settings.store)


def build_core(settings: Settings, announce_admin_key: bool = True) -> MatchingCore:
    store = open_store(settings)
    keys = KeyRing(store, settings.rate_per_minute)
    first_key = keys.ensure_admin()
    if first_key is not None and announce_admin_key:
        # Shown once: only its hash is stored. There are no default keys.
        print(
            f"\nFirst start: created an admin API key (shown once, keep it safe):\n\n    {first_key}\n",
            file=sys.stderr,
            flush=True,
        )
    inference = create_backend(settings)
    dim = int(inference.model_card["embedding_shape"][0]) * int(inference.model_card["embedding_shape"][1])
    galleries = GalleryManager(store, inference.model_id, dim, settings.ivf_threshold)
    galleries.load()
    galleries.start()
    metrics = Metrics()
    metrics.watch_galleries(galleries.sizes)
    return MatchingCore(settings, store, keys, galleries, inference, metrics)


async def close_core(core: MatchingCore) -> None:
    core.galleries.stop()
    core.close()
    await core.inference.close()
    core.store.close()
