"""Scenario 5 of the reliability report, short version: abuse from chat against `crieur run`.

The same code as `make reliability` (reliability/abuse.py), with 200 commands in the flood and
each kind of odd argument once. Times are measured for the report, never asserted here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability import abuse

pytestmark = pytest.mark.synapse  # the scenario runs a homeserver of its own


async def test_abuse_from_chat_changes_nothing_and_silences_nobody(tmp_path: Path) -> None:
    result = await abuse.run(
        tmp_path,
        burst_count=abuse.SHORT_BURST,
        odd_bodies=abuse.odd_arguments(short=True),
    )
    log = result.log

    refused = result.permissions
    assert len(refused.sent) == sum(
        len(abuse.permission_arguments(spec)) * (1 + len(spec.aliases))
        for spec in abuse.state_changing()
    )
    assert refused.sent, "the registry marks no command as changing state"
    assert refused.unanswered == [], log
    assert refused.wrong_answers == []
    assert refused.refused == len(refused.sent)
    assert not refused.state_changed
    assert refused.control_changed, "the moderator's !subscribe changed nothing: a dead check"

    burst = result.burst
    assert burst.unanswered == 0, log
    assert len(burst.answer_times) == burst.asked >= 2
    assert burst.answered_twice == 0
    # The per-person buckets held end to end: the flood got a handful of answers, not 200.
    assert 0 < burst.flood_answers < burst.flood // 4
    assert not burst.exited

    odd = result.odd
    assert odd.unanswered == [], log
    assert odd.internal_errors == []
    assert odd.answered_not_commands == []
    assert not odd.exited
    assert "Traceback" not in log
