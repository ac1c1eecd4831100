"""The daily prune: what the database forgets with time, so that its size stays bounded."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PruneSchedule:
    """When the prune runs: shortly after start, then at a steady interval."""

    first: float = 300.0  # seconds after start: the first polls and deliveries go first
    every: float = 86400.0  # seconds between two prunes


DAILY = PruneSchedule()


async def prune_forever(
    store: Store,
    retention: float,
    schedule: PruneSchedule = DAILY,
    clock: Callable[[], float] = time.time,
) -> None:
    """Prune old entries and sent messages on schedule until cancelled."""
    # Each batch is its own transaction: a cancel between two leaves the database consistent.
    await asyncio.sleep(schedule.first)
    while True:
        pruned = await store.prune(now=clock(), retention=retention)
        log.info(
            "retention: %d old entries and %d past events pruned (their keys kept as hashes), "
            "%d sent messages older than 7 days deleted",
            pruned.entries,
            pruned.events,
            pruned.messages,
        )
        await asyncio.sleep(schedule.every)
