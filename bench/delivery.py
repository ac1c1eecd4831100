"""Delivery: messages per second into Synapse, Crieur's Dispatcher against a bare nio loop."""

# Both sides post the same rendered contents, one at a time (the dispatcher's concurrency), in
# the same order (room after room, oldest entry first), each into rooms of its own.

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nio import AsyncClient, JoinResponse, RoomSendResponse

from bench.catalogue import config_data, load, region_slug
from bench.farm import item_summary
from bench.measure import Span, measured, median, progress
from bench.synapse import Synapse, create_room
from bot.app import data_dir_for
from bot.catalogue import Catalogue
from bot.dispatcher import DeliveryRenderer, Dispatcher
from bot.matrix import MatrixBot
from bot.metrics import CountingSender, Metrics
from bot.model import Delivery, Entry
from bot.store import FeedState, Store

WARM_UP = 1  # entries each side sends to each room first: logins, state reads, connection pools


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """Messages per round and the measured rounds of each side."""

    messages: int
    rooms: int
    crieur: list[Span]
    bare: list[Span]

    @property
    def crieur_rate(self) -> float:
        return self.messages / median([span.wall for span in self.crieur])

    @property
    def bare_rate(self) -> float:
        return self.messages / median([span.wall for span in self.bare])


def _entries(tag: str, count: int) -> list[Entry]:
    now = datetime.now(UTC)
    return [
        Entry(
            key=f"https://org0.example.org/?p={tag}-{number}",
            title=f"Delivery {tag}, item {number}: monthly install party",
            link=f"https://org0.example.org/news/{tag}-{number}",
            published=now,
            summary_html=item_summary(0, number),
        )
        for number in range(count)
    ]


class _Crieur:
    """The bot's sending side as `crieur run` wires it; `queue` adds outbox rows to drain."""

    def __init__(
        self, store: Store, bot: MatrixBot, catalogue: Catalogue, feed: FeedState, rooms: int
    ) -> None:
        self.store = store
        self.rooms = rooms
        self.bot = bot
        self.feed = feed
        self.region = region_slug(0)
        self.renderer = DeliveryRenderer(catalogue, "fr")
        metrics = Metrics()
        self.dispatcher = Dispatcher(
            store,
            CountingSender(bot, metrics),
            self.renderer,
            listeners={"metrics": metrics.message_sent},
        )

    async def queue(self, entries: Sequence[Entry]) -> None:
        """Record new entries of the feed: one outbox row each for each followed room."""
        now = time.time()
        record = await self.store.record_poll(
            self.feed,
            self.region,
            entries,
            now=now,
            next_poll=now + 3600,
            max_age=7 * 86400.0,
            max_posts=len(entries),
            etag=None,
            last_modified=None,
            body_hash=uuid.uuid4().hex,
        )
        if record.deliveries != len(entries) * self.rooms:
            raise RuntimeError(
                f"expected {len(entries) * self.rooms} outbox rows, got {record.deliveries}"
            )

    async def send(self, count: int) -> Span:
        """Drain the outbox; refuse a run in which not every row was sent."""
        with measured() as span:
            sent = await self.dispatcher.drain()
        if sent != count:
            raise RuntimeError(f"the dispatcher sent {sent} messages of {count}")
        return span


async def _bare_send(
    client: AsyncClient, rooms: Sequence[str], contents: Sequence[dict[str, Any]]
) -> Span:
    with measured() as span:
        for room_id in rooms:
            for content in contents:
                response = await client.room_send(
                    room_id, "m.room.message", content, tx_id=uuid.uuid4().hex
                )
                if not isinstance(response, RoomSendResponse):
                    raise RuntimeError(f"bare send failed: {response}")
    return span


async def bench_delivery(
    synapse: Synapse, workdir: Path, messages: int, rooms: int, repeats: int
) -> DeliveryResult:
    """Send `messages` messages over `rooms` rooms `repeats` times each way, alternating."""
    per_room = max(messages // rooms, 1)
    messages = per_room * rooms
    owner = await synapse.client("owner")
    crieur_rooms = sorted([await create_room(owner, f"crieur {n}") for n in range(rooms)])
    bare_rooms = [await create_room(owner, f"bare {n}") for n in range(rooms)]
    progress(f"delivery: {2 * rooms} rooms created")
    user_id, password = await synapse.register("crieur")
    # The feed is never fetched: entries are recorded as a poll would, then delivered.
    data = config_data(
        workdir / "delivery.sqlite3",
        ["https://org0.example.org/feed.xml"],
        homeserver=synapse.base_url,
        user_id=user_id,
        password=password,
        rooms={region_slug(0): crieur_rooms},
    )
    config = load(data, workdir)
    bare = await synapse.client("bare")
    for room_id in bare_rooms:
        joined = await bare.join(room_id)
        if not isinstance(joined, JoinResponse):
            raise RuntimeError(f"cannot join {room_id}: {joined}")
    async with await Store.open(config.database) as store:
        await store.sync_feeds(
            (org.slug, url) for org in config.organisations.values() for url in org.feeds
        )
        bot = MatrixBot(
            config.matrix,
            store,
            data_dir=data_dir_for(config),
            region_rooms={slug: region.rooms for slug, region in config.regions.items()},
        )
        try:
            await bot.start()  # logs in, joins the configured rooms, makes them follow region 0
            feed = (await store.feeds())[0]
            crieur = _Crieur(store, bot, Catalogue.from_config(config), feed, rooms)
            await crieur.queue([])  # the feed's first fetch: seeded, nothing posted
            feed = crieur.feed = (await store.feeds())[0]

            def contents(entries: Sequence[Entry]) -> list[dict[str, Any]]:
                # The same rendered messages the bot posts, so both sides send the same bytes.
                return [
                    crieur.renderer(Delivery(0, bare_rooms[0], "", feed.organisation, entry))
                    for entry in entries
                ]

            warm = _entries("warm-up", WARM_UP)
            await crieur.queue(warm)
            await crieur.send(WARM_UP * rooms)
            await _bare_send(bare, bare_rooms, contents(warm))
            crieur_spans: list[Span] = []
            bare_spans: list[Span] = []
            for round_ in range(repeats):
                entries = _entries(f"round-{round_}", per_room)
                await crieur.queue(entries)
                bare_contents = contents(entries)
                for who in ("crieur", "bare") if round_ % 2 == 0 else ("bare", "crieur"):
                    if who == "crieur":
                        span = await crieur.send(messages)
                        crieur_spans.append(span)
                    else:
                        span = await _bare_send(bare, bare_rooms, bare_contents)
                        bare_spans.append(span)
                    progress(
                        f"delivery: {who:6} {messages / span.wall:6.1f} messages/s "
                        f"({messages} into {rooms} rooms in {span.wall:.2f} s)"
                    )
        finally:
            await bot.close()
    return DeliveryResult(messages, rooms, crieur_spans, bare_spans)
