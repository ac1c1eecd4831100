"""Latency: from an item appearing in a feed to its message in the room, the whole bot running."""

# `bot.app.run_bot` runs with its poll interval (30 s) on one feed of the farm per sample; the
# farm publishes one item in each feed at random moments spread over a few intervals, and a
# member's nio client long-polls the room, noting when each item's message arrives. The wait for
# the next poll is at most one interval by design; what the bot adds after fetching the item
# (parse, store, dispatch, send) is the excess, compared with Synapse's own send-to-sync latency
# measured with a bare nio client in the same room.

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from nio import AsyncClient, JoinResponse, RoomSendResponse

from bench.catalogue import config_data, load, region_slug
from bench.farm import ITEMS, Farm, item_tag
from bench.measure import median, progress
from bench.synapse import (
    Synapse,
    create_room,
    messages_of,
    sync_token,
    wait_for_message,
)
from bot.app import run_bot

T = TypeVar("T")

READY_TIMEOUT = 180.0  # the bot's start, then two polls of every feed (up to 1.5 intervals)
STEADY_HITS = 2
SEEN_GRACE = 60.0  # seconds past the last publication plus an interval before giving up
BARE_SAMPLES = 5


@dataclass(frozen=True, slots=True)
class LatencySample:
    """One item: published, first served to the bot, seen in the room (epoch seconds)."""

    published: float
    served: float
    seen: float

    @property
    def total(self) -> float:
        return self.seen - self.published

    @property
    def excess(self) -> float:
        return self.seen - self.served


@dataclass(frozen=True, slots=True)
class LatencyResult:
    """The samples, and the bare send-to-seen latencies of Synapse."""

    interval: float
    spread: float  # seconds over which the items were published
    samples: list[LatencySample]
    bare: list[float]

    @property
    def excess(self) -> float:
        return median([sample.excess for sample in self.samples])

    @property
    def worst_excess(self) -> float:
        return max(sample.excess for sample in self.samples)

    @property
    def median_total(self) -> float:
        return median([sample.total for sample in self.samples])

    @property
    def worst_total(self) -> float:
        return max(sample.total for sample in self.samples)

    @property
    def bare_latency(self) -> float:
        return median(self.bare)


async def _bare_latency(sender: AsyncClient, reader: AsyncClient, room_id: str) -> float:
    since = await sync_token(reader, room_id)
    needle = f"bare latency probe {time.time()}"
    started = time.time()
    response = await sender.room_send(
        room_id, "m.room.message", {"msgtype": "m.notice", "body": needle}
    )
    if not isinstance(response, RoomSendResponse):
        raise RuntimeError(f"bare send failed: {response}")
    seen = await wait_for_message(reader, room_id, since, sender.user_id, needle)
    return seen - started


async def _watch(
    reader: AsyncClient, room_id: str, since: str, sender: str, seen: dict[str, float]
) -> None:
    """Long-poll the room forever, noting when each message of `sender` was first seen."""
    async for body, now in messages_of(reader, room_id, since, sender):
        seen.setdefault(body, now)


def _seen_at(seen: dict[str, float], needle: str) -> float | None:
    return next((at for body, at in seen.items() if needle in body), None)


async def bench_latency(
    synapse: Synapse,
    farm: Farm,
    first_feed: int,
    workdir: Path,
    samples: int,
    interval: float,
    spread: float,
) -> LatencyResult:
    """Run the bot on `samples` feeds; publish one item in each at a random moment of `spread`."""
    reader = await synapse.client("reader")
    room_id = await create_room(reader, "latency")
    bare = await synapse.client("bare")
    joined = await bare.join(room_id)
    if not isinstance(joined, JoinResponse):
        raise RuntimeError(f"cannot join {room_id}: {joined}")
    user_id, password = await synapse.register("crieur")
    feeds = list(range(first_feed, first_feed + samples))
    data = config_data(
        workdir / "latency.sqlite3",
        [farm.url(feed) for feed in feeds],
        homeserver=synapse.base_url,
        user_id=user_id,
        password=password,
        rooms={region_slug(0): [room_id]},
        interval=f"{interval:g}s",
        regions=1,
    )
    config = load(data, workdir)
    ready = asyncio.Event()
    bot = asyncio.create_task(run_bot(config, on_ready=ready.set), name="crieur")
    seen: dict[str, float] = {}
    watcher: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await _racing(bot, ready.wait())
            # Steady state: after its first fetch (at start, every feed at once) a feed is next
            # polled on its own slot of the interval, at least half an interval later, so up
            # to 1.5 intervals later; from its second poll on, once per interval. Items are
            # published once every feed has had its second poll.
            for feed in feeds:
                while (await farm.feed_state(feed))[0] < STEADY_HITS:
                    await _racing(bot, asyncio.sleep(0.2))
        bare_latencies = [
            await _bare_latency(bare, reader, room_id) for _ in range(min(samples, BARE_SAMPLES))
        ]
        since = await sync_token(reader, room_id)
        watcher = asyncio.create_task(_watch(reader, room_id, since, user_id, seen))
        moments = sorted(random.uniform(0, spread) for _ in feeds)
        began = time.time()
        published: dict[int, tuple[float, int, str]] = {}
        for feed, moment in zip(feeds, moments, strict=True):
            await _racing(bot, asyncio.sleep(max(began + moment - time.time(), 0)))
            at = time.time()
            version, _ = (await farm.publish([feed]))[feed]
            published[feed] = (at, version, item_tag(feed, version + ITEMS - 1))
        progress(f"latency: {samples} items published over {spread:g} s; waiting for the room")
        async with asyncio.timeout(interval + SEEN_GRACE):
            while any(_seen_at(seen, tag) is None for _, _, tag in published.values()):
                if watcher.done():
                    watcher.result()
                await _racing(bot, asyncio.sleep(0.2))
        results: list[LatencySample] = []
        for feed, (at, version, tag) in published.items():
            served = (await farm.feed_state(feed))[1][version]
            seen_at = _seen_at(seen, tag)
            assert seen_at is not None
            results.append(LatencySample(at, served, seen_at))
        totals = [sample.total for sample in results]
        progress(
            f"latency: published → seen median {median(totals):.2f} s, max {max(totals):.2f} s "
            f"(poll interval {interval:g} s)"
        )
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        bot.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await bot
    return LatencyResult(interval, spread, results, bare_latencies)


async def _racing(bot: asyncio.Task[None], awaitable: Awaitable[T]) -> T:
    """Await `awaitable`, but fail at once, with the bot's error, if the bot stops meanwhile."""
    waiter = asyncio.ensure_future(awaitable)
    try:
        await asyncio.wait([bot, waiter], return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not waiter.done():
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
    if not waiter.cancelled() and waiter.done() and not bot.done():
        return waiter.result()
    if bot.done() and not bot.cancelled() and bot.exception() is not None:
        raise RuntimeError("the bot stopped with an error") from bot.exception()
    raise RuntimeError("the bot stopped")
