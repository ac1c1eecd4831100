"""The answer queue: a few answers per person, the least answered first, tokens stored after."""

from __future__ import annotations

from bot.matrix import MAX_QUEUED_PER_SENDER
from bot.matrix.answers import Answers


async def test_queued_answers_serve_people_in_turn_and_cap_each_person() -> None:
    answers = Answers()
    flood = [answers.put("!r", "@flood:x", f"$f{n}", {}) for n in range(MAX_QUEUED_PER_SENDER + 5)]
    assert flood == [True] * MAX_QUEUED_PER_SENDER + [False] * 5  # the rest dropped
    assert answers.put("!r", "@alice:x", "$a1", {})
    # Alice waits for the flood's answer being sent, not for all of them.
    order = [(await answers.next()).event_id for _ in range(3)]
    assert order == ["$f0", "$a1", "$f1"]


async def test_whoever_was_answered_least_lately_goes_first() -> None:
    now = [0.0]
    answers = Answers(clock=lambda: now[0])
    for n in range(3):
        answers.put("!r", "@flood:x", f"$f{n}", {})
        assert (await answers.next()).event_id == f"$f{n}"
    answers.put("!r", "@flood:x", "$f3", {})
    answers.put("!r", "@alice:x", "$a1", {})  # queued after the flood's
    assert (await answers.next()).event_id == "$a1"
    now[0] = 1000.0  # long after: the flood's answers no longer count against it
    answers.put("!r", "@alice:x", "$a2", {})
    assert [(await answers.next()).event_id for _ in range(2)] == ["$f3", "$a2"]


async def test_a_sync_token_is_safe_to_store_once_its_answers_are_settled() -> None:
    answers = Answers()
    assert answers.processed("t1") == "t1"  # no command in that sync
    answers.put("!r", "@alice:x", "$a", {})
    assert answers.processed("t2") is None  # its answer is not sent yet
    assert answers.processed("t3") is None  # nor may a later token skip it
    answer = await answers.next()
    assert answers.done(answer) == "t3"
