"""Scenario 3 of the reliability report, short: hostile feeds beside good ones, `crieur run`
against the session's Synapse, a user sending commands meanwhile (`make reliability` runs it
longer and writes the figures to docs/RELIABILITY.md)."""

from __future__ import annotations

from pathlib import Path

from reliability import hostile_feeds
from tests.feed_server import FeedServer
from tests.synapse_server import SynapseServer


async def test_hostile_feeds_neither_crash_the_bot_nor_flood_nor_leak(
    synapse: SynapseServer, feed_server: FeedServer, tmp_path: Path
) -> None:
    figures = await hostile_feeds.run(synapse, feed_server, tmp_path, seconds=12)

    assert figures.crashes == 0
    assert figures.hostile_feeds >= 25
    assert figures.good_expected > 0
    assert (figures.good_lost, figures.good_duplicated) == (0, 0)
    assert figures.commands_sent > 0
    assert (figures.commands_unanswered, figures.commands_answered_twice) == (0, 0)
    assert figures.changing_polls > 0 and figures.changing_posts > 0
    assert figures.changing_most_in_one_poll <= hostile_feeds.MAX_POSTS
    assert figures.secret_leaks == 0
    assert figures.private_refused == figures.private_checked > 0
    assert figures.private_requests == 0
    assert figures.hostile_posts > 0
    assert {name: held for name, held in figures.checks().items() if not held} == {}
