"""Scenario 1, crash safety: `crieur run` SIGKILLed during delivery, during a poll (between
fetch and store) and during a command, restarted each time; the rooms' history must then hold
every entry exactly once, in order per organisation, and every command must have been answered
once and taken effect."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.e2e_support import CrieurProcess, replies_to
from tests.feed_server import FeedServer
from tests.synapse_server import SynapseServer

from .delivery import Deployment, Tally, posts_logged, services
from .report import Row

METHOD = (
    "**crash** (scenario 1): `crieur run` relays five organisations, each into a room of its "
    "own. With the pending entries published, the process is SIGKILLed a random number of "
    "posts (plus 0–50 ms) into each run and restarted, until the kills are spent. Then it is "
    "SIGKILLed as soon as its debug log says a changed feed was fetched (a 200; its entries are "
    "checked not to be in the database yet), and as soon as it logs that it runs a "
    "`!subscribe` (plus 0–25 ms). A reader then reads each room's history: every entry must "
    "be there once and in order, every command answered once and in effect (an entry of the "
    "subscribed organisation reaches the room once). A crash is a process that exits by "
    "itself or logs a traceback."
)


@dataclass(frozen=True, slots=True)
class Counts:
    """How much each part of the scenario does."""

    entries: int  # pending entries, spread over the five organisations
    delivery_kills: int
    poll_kills: int
    command_kills: int


FULL = Counts(entries=200, delivery_kills=20, poll_kills=5, command_kills=6)
SHORT = Counts(entries=40, delivery_kills=3, poll_kills=1, command_kills=1)


async def scenario(full: bool, workdir: Path) -> list[Row]:
    """The runner's entry: its own Synapse and feed server."""
    async with services(workdir) as (synapse, feed_server):
        return await run(synapse, feed_server, workdir, FULL if full else SHORT)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the delivery, poll and command parts did, before the rooms are read."""

    delivery_kills: int  # kills that landed while messages were owed
    unrecorded: int  # kills between a message's acceptance and its record as sent
    poll_kills: int  # kills that landed between fetch and store
    poll_titles: list[str]
    commands: list[tuple[str, str, str]]  # (room, command event id, organisation subscribed)
    stages: dict[str, int]  # where the command kills landed → how many


async def run(
    synapse: SynapseServer,
    feed_server: FeedServer,
    workdir: Path,
    counts: Counts,
    *,
    seed: int | None = None,
) -> list[Row]:
    """Run every part on one deployment, then count what the rooms received."""
    # Printed in the notes: the same seed draws the same kill points (timing aside).
    seed = random.randrange(2**32) if seed is None else seed
    rng = random.Random(seed)
    deployment = await Deployment.create(synapse, feed_server, workdir / "crash")
    try:
        process = await deployment.start()
        await deployment.wait_seeded()
        delivery_titles = _publish_pending(deployment, counts.entries)
        process, delivered, unrecorded = await _kill_during_delivery(
            deployment, process, counts, rng
        )
        await deployment.wait_delivered()
        delivery = await deployment.tally()

        process, poll_kills, poll_titles = await _kill_during_polls(deployment, process, counts)
        process, commands, stages = await _kill_during_commands(deployment, process, counts, rng)
        await deployment.wait_delivered()
        await deployment.quiet()
        code = await deployment.terminate(process)
        overall = await deployment.tally()
        answers = await _answers(deployment, commands)
        crashes = deployment.crashes() + (code != 0)
    except (AssertionError, TimeoutError) as error:
        return [await deployment.aborted("crash", len(deployment.processes), error)]
    finally:
        await deployment.close()
    return _rows(
        counts,
        delivery,
        overall,
        Outcome(delivered, unrecorded, poll_kills, poll_titles, commands, stages),
        answers,
        crashes,
        len(delivery_titles),
        seed,
    )


def _posts_at_least(count: int) -> Callable[[list[str]], bool]:
    return lambda lines: posts_logged(lines) >= count


def _mentions(marker: str) -> Callable[[list[str]], bool]:
    return lambda lines: any(marker in line for line in lines)


def _publish_pending(deployment: Deployment, entries: int) -> list[str]:
    slugs = list(deployment.rooms)
    titles: list[str] = []
    for index, slug in enumerate(slugs):
        share = entries // len(slugs) + (index < entries % len(slugs))
        titles += deployment.publish(slug, share)
    return titles


async def _kill_during_delivery(
    deployment: Deployment, process: CrieurProcess, counts: Counts, rng: random.Random
) -> tuple[CrieurProcess, int, int]:
    """SIGKILL a random number of posts into each run; return the last process, the kills
    that landed with messages still to deliver, and those that landed between a message's
    acceptance by the homeserver and its record in the outbox."""
    landed = unrecorded = 0
    for kill in range(counts.delivery_kills):
        # Counted from the outbox: entries of feeds not polled yet are owed too.
        remaining = counts.entries - await deployment.sent()
        if remaining <= 1:
            break
        # Spread the kills over what is left, at random: some runs send one message, some many.
        # At most a fair share each, so that later kills still find messages to deliver.
        share = max(remaining // (counts.delivery_kills - kill + 1), 1)
        target = rng.randint(1, share)
        await deployment.wait_log(process, _posts_at_least(target), f"{target} posts")
        await asyncio.sleep(rng.uniform(0.0, 0.05))
        await deployment.kill(process)
        recorded = await deployment.sent()
        landed += recorded < counts.entries
        # More posts in the rooms than rows recorded as sent: killed with a message in flight
        # that the homeserver took anyway, so the next run sends it again.
        arrived = sum([len(await deployment.titles_in(room)) for room in deployment.rooms.values()])
        unrecorded += arrived > recorded
        # Pending rows go out before `crieur run` says it runs: do not wait for that.
        process = await deployment.start(wait_running=False)
    return process, landed, unrecorded


async def _kill_during_polls(
    deployment: Deployment, process: CrieurProcess, counts: Counts
) -> tuple[CrieurProcess, int, list[str]]:
    """SIGKILL as soon as a changed feed has been fetched; return the kills that landed before
    its entries were stored."""
    await deployment.terminate(process)
    landed = 0
    titles: list[str] = []
    slugs = list(deployment.rooms)
    for kill in range(counts.poll_kills):
        process = await deployment.start(log_level="debug")
        slug = slugs[kill % len(slugs)]
        # Long summaries: parsing takes a while, which widens the window between fetch and store.
        published = deployment.publish(slug, 30, summary=6000)
        titles += published
        marker = f"bot.fetcher: GET {deployment.feeds.url(slug)} → 200 "
        await deployment.wait_log(process, _mentions(marker), "a fetch")
        await deployment.kill(process)
        landed += await deployment.stored(published) == 0
    process = await deployment.start()
    return process, landed, titles


async def _kill_during_commands(
    deployment: Deployment, process: CrieurProcess, counts: Counts, rng: random.Random
) -> tuple[CrieurProcess, list[tuple[str, str, str]], dict[str, int]]:
    """SIGKILL while `!subscribe` runs; after the restart, publish to the organisations
    subscribed to. Also return where the kills landed."""
    slugs = list(deployment.rooms)
    room = deployment.rooms[slugs[0]]  # the reader created it: a moderator there
    commands: list[tuple[str, str, str]] = []
    landed = dict.fromkeys(STAGES, 0)
    for kill in range(counts.command_kills):
        target = slugs[1 + kill % (len(slugs) - 1)]
        event_id = await SynapseServer.send_text(deployment.reader, room, f"!subscribe {target}")
        commands.append((room, event_id, target))
        marker = f"command subscribe from {deployment.reader.user_id} in {room} (event {event_id})"
        await deployment.wait_log(process, _mentions(marker), "the command")
        await asyncio.sleep(rng.uniform(0.0, 0.025))
        await deployment.kill(process)
        landed[await _command_stage(deployment, room, event_id, target)] += 1
        process = await deployment.start()
    # The restarted bot has replayed or skipped each command: their effect shows in what arrives.
    for target in dict.fromkeys(target for _, _, target in commands):
        deployment.publish(target, 1, rooms=[room])
    return process, commands, landed


STAGES = ("before its change", "after its change, before its answer", "after its answer")


async def _command_stage(deployment: Deployment, room: str, event_id: str, target: str) -> str:
    """Where the kill landed: before the subscription was stored, before the answer, after."""
    events = await SynapseServer.timeline(deployment.reader, room)
    if any(event.sender == deployment.user_id for event in replies_to(events, event_id)):
        return STAGES[2]
    stored = await asyncio.to_thread(
        deployment.query,
        "SELECT COUNT(*) FROM follows WHERE room_id = ? AND kind = 'organisation' AND slug = ?",
        room,
        target,
    )
    return STAGES[1] if stored else STAGES[0]


async def _answers(deployment: Deployment, commands: list[tuple[str, str, str]]) -> dict[str, int]:
    """How many answers each command got."""
    answers: dict[str, int] = {}
    for room, event_id, _ in commands:
        events = await SynapseServer.timeline(deployment.reader, room)
        answers[event_id] = len(
            [event for event in replies_to(events, event_id) if event.sender == deployment.user_id]
        )
    return answers


def _rows(
    counts: Counts,
    delivery: Tally,
    overall: Tally,
    outcome: Outcome,
    answers: dict[str, int],
    crashes: int,
    delivery_entries: int,
    seed: int,
) -> list[Row]:
    # Entries added after the delivery part (the poll part and the command part's checks).
    later = Tally(
        overall.expected - delivery.expected,
        overall.lost - delivery.lost,
        overall.duplicated - delivery.duplicated,
        overall.misordered,
    )
    unanswered = sum(1 for count in answers.values() if count == 0)
    twice = sum(count - 1 for count in answers.values() if count > 1)
    return [
        Row(
            "1a. crash: SIGKILL during delivery",
            counts.delivery_kills,
            delivery.expected,
            delivery.lost,
            delivery.duplicated,
            crashes,
            f"{delivery_entries} entries in 5 rooms; {outcome.delivery_kills} kills with messages "
            f"still to deliver, {outcome.unrecorded} of them with a message in flight that the "
            f"homeserver took but the bot never recorded as sent (sent again on restart, "
            f"deduplicated by its transaction id); {delivery.describe()}; random seed {seed}",
        ),
        Row(
            "1b. crash: SIGKILL during a poll, between fetch and store",
            counts.poll_kills,
            later.expected,
            later.lost,
            later.duplicated,
            0,
            f"{outcome.poll_kills} of {counts.poll_kills} kills before the entries were stored; "
            f"{len(outcome.poll_titles)} entries polled; the command part's "
            f"{later.expected - len(outcome.poll_titles)} check entries counted here too; "
            f"{later.describe()}",
        ),
        Row(
            "1c. crash: SIGKILL during a command",
            counts.command_kills,
            len(answers),
            unanswered,
            twice,
            0,
            "`!subscribe`, killed as it runs ("
            + ", ".join(f"{count} {stage}" for stage, count in outcome.stages.items())
            + "); expected = commands answered exactly once, in effect as the entries of the "
            "row above show",
        ),
    ]
