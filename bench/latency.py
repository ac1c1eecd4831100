"""Latency: from an item appearing in a feed to its message in the room, the whole bot running."""

# `bot.app.run_bot` runs with a short poll interval; the farm publishes an item at a random
# moment of the interval and a member's nio client long-polls the room until the message
# arrives. The wait for the next poll is at most one interval by design; what the bot adds after
# fetching the item (parse, store, dispatch, send) is the excess, compared with Synapse's own
# send-to-sync latency measured with a bare nio client in the same room.

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
from bench.farm import Farm
from bench.measure import median, progress
from bench.synapse import Synapse, create_room, sync_token, wait_for_message
from bot.app import run_bot

T = TypeVar("T")

READY_TIMEOUT = 120.0
SAMPLE_TIMEOUT = 60.0


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
    samples: list[LatencySample]
    bare: list[float]

    @property
    def excess(self) -> float:
        return median([sample.excess for sample in self.samples])

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


async def bench_latency(
    synapse: Synapse, farm: Farm, feed: int, workdir: Path, samples: int, interval: float
) -> LatencyResult:
    """Run the bot on one feed of the farm; time `samples` items from publication to the room."""
    reader = await synapse.client("reader")
    room_id = await create_room(reader, "latency")
    bare = await synapse.client("bare")
    joined = await bare.join(room_id)
    if not isinstance(joined, JoinResponse):
        raise RuntimeError(f"cannot join {room_id}: {joined}")
    user_id, password = await synapse.register("crieur")
    data = config_data(
        workdir / "latency.sqlite3",
        [farm.url(feed)],
        homeserver=synapse.base_url,
        user_id=user_id,
        password=password,
        rooms={region_slug(0): [room_id]},
        interval=f"{interval:g}s",
    )
    config = load(data, workdir)
    ready = asyncio.Event()
    bot = asyncio.create_task(run_bot(config, on_ready=ready.set), name="crieur")
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            # Ready, then seeded: a second request means the first fetch has been recorded.
            await _racing(bot, ready.wait())
            while (await farm.feed_state(feed))[0] < 2:
                await _racing(bot, asyncio.sleep(0.1))
        bare_latencies = [await _bare_latency(bare, reader, room_id) for _ in range(samples)]
        results: list[LatencySample] = []
        for _ in range(samples):
            # Items appear at any moment of the interval, not just after a poll.
            await _racing(bot, asyncio.sleep(random.uniform(0, interval)))
            since = await sync_token(reader, room_id)
            published = time.time()
            version, title = (await farm.publish([feed]))[feed]
            async with asyncio.timeout(SAMPLE_TIMEOUT):
                seen = await _racing(bot, wait_for_message(reader, room_id, since, user_id, title))
            served = (await farm.feed_state(feed))[1][version]
            sample = LatencySample(published, served, seen)
            results.append(sample)
            progress(
                f"latency: published → seen {sample.total:.2f} s "
                f"(poll interval {interval:g} s, fetched → seen {sample.excess:.2f} s)"
            )
    finally:
        bot.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await bot
    return LatencyResult(interval, results, bare_latencies)


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
