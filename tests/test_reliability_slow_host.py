"""Scenario 7 of the reliability report, short version: a slow host beside a fast one.

The same code as `make reliability` (reliability/slow_host.py), with the slow host answering
in 8 s instead of 19. Delays are measured for the report; what is asserted is that every entry
of the fast host was posted on time and the slow host never had more requests than its limit.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability import slow_host
from tests.feed_server import FeedServer
from tests.synapse_server import SynapseServer


@pytest.mark.timeout(300)
async def test_feeds_of_a_fast_host_are_posted_on_time_beside_sixty_slow_ones(
    tmp_path: Path, synapse: SynapseServer, feed_server: FeedServer
) -> None:
    row = await slow_host.run(synapse, feed_server, tmp_path, slow_host.SHORT)

    assert row.expected == 5 * slow_host.SHORT.rounds
    assert row.passed, row.note
