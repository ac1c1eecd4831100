"""`crieur run` prunes on its own: the retention task beside polling and delivery, on Synapse."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from bot.app import run_bot
from bot.model import Entry
from bot.retention import PruneSchedule
from bot.store import Store
from bot.store.retention import KEPT_PER_FEED
from tests.e2e_support import Feeds, bot_account, config_data, load
from tests.feed_server import FeedServer
from tests.synapse_server import SynapseServer
from tests.test_retention import prune_log

DAY = 86400.0
OLD_FEED = "https://gone.example/rss"  # no longer configured: its entries still age out


async def prefill(database: Path, now: float) -> None:
    """A feed with one entry first seen 40 days ago and its newest 200 seen today."""
    async with await Store.open(database) as store:
        await store.sync_feeds([("gone", OLD_FEED)])
        (feed,) = await store.feeds(["gone"])
        for at, keys in ((now - 40 * DAY, ["old"]), (now, [f"n{n}" for n in range(KEPT_PER_FEED)])):
            await store.record_poll(
                feed, "", [Entry(key, key, None, None, "") for key in keys], now=at,
                next_poll=at, max_age=DAY, max_posts=5, etag=None, last_modified=None,
                body_hash=None,
            )  # fmt: skip


async def test_crieur_run_prunes_with_the_configured_retention(
    synapse: SynapseServer, feed_server: FeedServer, tmp_path: Path
) -> None:
    database = tmp_path / "crieur.sqlite3"
    await prefill(database, time.time())
    data = config_data(
        synapse=synapse,
        account=await bot_account(synapse),
        feeds=Feeds(feed_server),
        database=database,
    )
    data["retention"] = "30d"
    task = asyncio.create_task(
        run_bot(load(data, tmp_path), prune=PruneSchedule(first=0.5, every=3600))
    )
    with prune_log() as log:
        try:
            async with asyncio.timeout(60):
                await asyncio.wait(
                    {task, asyncio.ensure_future(log.wait(1))},
                    return_when=asyncio.FIRST_COMPLETED,
                )
            assert not task.done(), "the bot stopped by itself"
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    lines = log.lines
    assert lines == [
        "retention: 1 old entries and 0 past events pruned (their keys kept as hashes), "
        "0 sent messages older than 7 days deleted"
    ]
    with closing(sqlite3.connect(database)) as conn:
        kept = {
            key
            for (key,) in conn.execute(
                "SELECT key FROM entries JOIN feeds f ON f.id = feed_id WHERE f.config_url = ?",
                (OLD_FEED,),
            )
        }
    assert "old" not in kept
    assert len(kept) == KEPT_PER_FEED
