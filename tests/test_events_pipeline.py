"""A calendar's poll through the real fetcher and a local HTTP server: parse, record, announce."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.cli import EXIT_OK, main
from bot.config import PollingConfig
from bot.event_posting import CalendarSettings
from bot.fetcher import Fetcher
from bot.pipeline import Pipeline
from bot.scheduler import PollTiming
from bot.store import Store
from tests.clock import Clock
from tests.feed_server import FeedServer
from tests.ics_export import ics

START = datetime(2026, 2, 10, 12, 0, tzinfo=UTC)
PATH = "/agenda.ics"


@dataclass
class Bench:
    store: Store
    pipeline: Pipeline
    server: FeedServer

    async def poll(self):  # type: ignore[no-untyped-def]
        (feed,) = await self.store.feeds()
        return await self.pipeline.poll(feed)


@pytest.fixture
async def bench(tmp_path: Path, feed_server: FeedServer) -> AsyncIterator[Bench]:
    polling = PollingConfig(interval=1800, timeout=2, allow_private_networks=True)
    store = await Store.open(tmp_path / "crieur.sqlite3")
    await store.sync_feeds([], [("", "la-reunion", feed_server.url(PATH))])
    await store.follow("!room:x", "region", "la-reunion", now=START.timestamp())
    settings = CalendarSettings(zones={"la-reunion": "Indian/Reunion"})
    async with Fetcher(polling) as fetcher:
        pipeline = Pipeline(
            store,
            fetcher,
            {},
            polling,
            timing=PollTiming({}, polling),
            clock=Clock(START.timestamp()),
            calendars=settings,
        )
        yield Bench(store, pipeline, feed_server)
    await store.close()


async def test_a_calendar_is_seeded_then_its_new_event_queued(bench: Bench) -> None:
    first = [("1", "Rencontre", START + timedelta(days=3))]
    bench.server.set_feed(PATH, ics(first), etag="v1", content_type="text/calendar")
    outcome = await bench.poll()
    assert outcome.status == "seeded" and outcome.record.new_events == 1
    bench.server.set_feed(
        PATH,
        ics([*first, ("2", "Install party", START + timedelta(days=4))]),
        etag="v2",
        content_type="text/calendar",
    )
    outcome = await bench.poll()
    assert (outcome.status, outcome.record.announced, outcome.record.deliveries) == ("new", 1, 1)
    (delivery,) = await bench.store.pending_deliveries(START.timestamp())
    assert delivery.event is not None and delivery.event.title == "Install party"
    assert (await bench.poll()).status == "not_modified"


@pytest.mark.parametrize(
    "body", [b"<html><body>Agenda</body></html>", b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n"]
)
async def test_a_body_that_is_not_a_calendar_is_a_failure(bench: Bench, body: bytes) -> None:
    bench.server.set_feed(PATH, body, content_type="text/html")
    outcome = await bench.poll()
    assert outcome.status == "error"
    (feed,) = await bench.store.feeds()
    assert feed.error_count == 1 and not feed.initialised
    assert await bench.store.upcoming_events(["la-reunion"], [], now=0, limit=5) == []


async def test_crieur_fetch_reports_a_region_s_calendar(
    tmp_path: Path, feed_server: FeedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "matrix: {homeserver: 'http://127.0.0.1:1', user_id: '@c:localhost', password: x}\n"
        "database: ./crieur.sqlite3\n"
        "polling: {timeout: 2s, allow_private_networks: true}\n"
        f"regions: {{la-reunion: {{name: La Réunion, events: ['{feed_server.url(PATH)}']}}}}\n",
        encoding="utf-8",
    )
    feed_server.set_feed(PATH, ics([("1", "Rencontre", START)]), content_type="text/calendar")
    assert await asyncio.to_thread(main, ["fetch", "-c", str(config), "--dry-run"]) == EXIT_OK
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == [
        "La Réunion",
        f"  {feed_server.url(PATH)}: first fetch: 1 events would be recorded as seen, "
        "none announced",
    ]
