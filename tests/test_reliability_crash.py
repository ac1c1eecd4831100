"""Scenario 1 of the reliability report, short: `crieur run` SIGKILLed during delivery, during a
poll and during a command, restarted; the rooms hold every entry once, in order."""

from __future__ import annotations

from pathlib import Path

from reliability import crash
from tests.feed_server import FeedServer
from tests.synapse_server import SynapseServer


async def test_sigkills_lose_nothing_duplicate_nothing_and_keep_the_order(
    synapse: SynapseServer, feed_server: FeedServer, tmp_path: Path
) -> None:
    rows = await crash.run(synapse, feed_server, tmp_path, crash.SHORT)

    assert [row.scenario for row in rows] == [
        "1a. crash: SIGKILL during delivery",
        "1b. crash: SIGKILL during a poll, between fetch and store",
        "1c. crash: SIGKILL during a command",
    ]
    for row in rows:
        assert (row.lost, row.duplicated, row.crashes) == (0, 0, 0), row
        assert "out of order" not in row.note, row
    delivery, poll, command = rows
    assert delivery.expected == crash.SHORT.entries
    assert poll.expected > 0
    assert command.expected == crash.SHORT.command_kills
    assert f"; {crash.SHORT.delivery_kills} kills with messages still to deliver," in delivery.note
    assert poll.note.startswith(f"{crash.SHORT.poll_kills} of {crash.SHORT.poll_kills} kills")
