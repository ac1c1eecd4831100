"""Scenario 7 of the reliability report, short version: a slow host beside a fast one.

The same code as `make reliability` (reliability/slow_host.py), with the slow host answering
in 8 s instead of 19. Delays in seconds are for the report (a shared machine makes them
noisy); what is asserted is an order of events: every entry of the fast host was posted once,
before the slow host had worked through its queue of 60 feeds, and the slow host never had
more requests at once than its limit.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability import slow_host
from tests.feed_server import FeedServer
from tests.synapse_server import SynapseServer


@pytest.mark.timeout(300)
async def test_feeds_of_a_fast_host_are_posted_without_waiting_for_sixty_slow_ones(
    tmp_path: Path, synapse: SynapseServer, feed_server: FeedServer
) -> None:
    row = await slow_host.run(synapse, feed_server, tmp_path, slow_host.SHORT, judge_delays=False)

    assert row.expected == 5 * slow_host.SHORT.rounds
    assert row.passed, row.note
