"""Scenario 2 of the reliability report, short: Synapse stopped in the middle of a delivery
and started again; nothing lost or doubled, the bot reconnects, /health tells the story."""

from __future__ import annotations

from pathlib import Path

from reliability import outage
from tests.feed_server import FeedServer
from tests.synapse_server import SynapseServer


async def test_outage_mid_delivery_loses_nothing_and_health_tells_it(
    synapse: SynapseServer, feed_server: FeedServer, tmp_path: Path
) -> None:
    row, health, reconnected = await outage.run(synapse, feed_server, tmp_path, outage.SHORT)

    assert (row.lost, row.duplicated, row.crashes) == (0, 0, 0), row
    assert row.expected == outage.SHORT.entries
    assert "out of order" not in row.note, row
    assert reconnected, row
    assert health.before == 200, health
    assert health.unhealthy_from is not None, health
    assert health.healthy_again is not None, health
