"""Scenario 5, abuse from chat: refused commands change nothing, a flood does not silence the bot,
odd arguments get clear answers.

`crieur run` runs as a real process against a Synapse whose message rate limit is strict
(`rc_message` 0.5 per second, burst 3). The people are exempted from it, so that one of them can
flood; the bot is not, except while the permission and odd-argument checks run (they measure
answers, not the homeserver's pace).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
import statistics
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from nio import AsyncClient, SyncResponse

from bot.commands import BURST, CommandSpec, build_registry
from bot.i18n import t
from reliability.report import Row
from tests.e2e_support import CrieurProcess, Feeds, bot_account, config_data, write_config
from tests.feed_server import FeedServer
from tests.synapse_server import Account, SynapseServer

LANGUAGE = "en"
ANSWER_WAIT = 90.0  # seconds a command may take to be answered before it counts as unanswered
FULL_BURST = 1000
SHORT_BURST = 200
# Commands of the flood: cheap ones and state-changing ones a non-moderator may not run.
FLOOD = ("!status", "!subscriptions", "!orgs", "!latest april", "!subscribe april", "!help")
# State the chat commands can change; kv (sync token) and the feed tables move by themselves.
STATE_TABLES = ("follows", "mutes", "rooms", "filters")
GUESTS = 8  # people sending the permission and odd-argument checks in turn, BURST each
ASK_PAUSE = 1.0  # seconds the other person waits after an answer before asking again
HUGE = 60_000  # characters: Synapse refuses events over 64 KiB, so 100 KB never reaches the bot


@dataclass
class Seen:
    """A bot notice as a member's sync received it, and when."""

    event_id: str
    reply_to: str | None
    body: str
    at: float


@dataclass
class Watcher:
    """A member's own /sync loop, recording when each of the bot's notices arrives."""

    client: AsyncClient
    room_id: str
    bot: str
    notices: list[Seen] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        first = await self.client.sync(timeout=0, sync_filter=_filter(1))
        if not isinstance(first, SyncResponse):
            raise RuntimeError(f"first sync failed: {first}")
        self._task = asyncio.create_task(self._run(first.next_batch))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def answers(self, event_id: str) -> list[Seen]:
        return [seen for seen in self.notices if seen.reply_to == event_id]

    async def answer(self, event_id: str, timeout: float = ANSWER_WAIT) -> Seen | None:  # noqa: ASYNC109
        """Wait for the bot's answer to `event_id`; None if none came within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.answers(event_id)
            if found:
                return found[0]
            await asyncio.sleep(0.05)
        return None

    async def _run(self, since: str) -> None:
        while True:
            response = await self.client.sync(
                timeout=10_000, sync_filter=_filter(1000), since=since
            )
            if not isinstance(response, SyncResponse):
                await asyncio.sleep(0.5)
                continue
            now = time.monotonic()
            since = response.next_batch
            room = response.rooms.join.get(self.room_id)
            for event in room.timeline.events if room is not None else ():
                source: dict[str, Any] = event.source
                content = source.get("content", {})
                if source.get("sender") != self.bot or content.get("msgtype") != "m.notice":
                    continue
                relation = content.get("m.relates_to", {}).get("m.in_reply_to", {})
                self.notices.append(
                    Seen(source["event_id"], relation.get("event_id"), content.get("body", ""), now)
                )


def _filter(limit: int) -> dict[str, Any]:
    none = {"not_types": ["*"]}
    return {
        "presence": none,
        "account_data": none,
        "room": {"ephemeral": none, "account_data": none, "timeline": {"limit": limit}},
    }


@dataclass
class Stage:
    """Synapse, the feeds, the people and `crieur run`, for the abuse checks."""

    synapse: SynapseServer
    feeds: Feeds
    bot: Account
    room_id: str
    moderator: AsyncClient
    people: dict[str, AsyncClient]
    process: CrieurProcess
    database: Path
    watcher: Watcher

    async def send(self, who: str, body: str) -> tuple[str, float]:
        client = self.moderator if who == "moderator" else self.people[who]
        began = time.monotonic()
        return await SynapseServer.send_text(client, self.room_id, body), began

    async def person(self, name: str) -> AsyncClient:
        """A further member of the room, exempt from the homeserver's rate limit."""
        client = self.synapse.client_for(
            await self.synapse.register_account(self.synapse.unique_localpart(name))
        )
        await self.synapse.exempt_from_rate_limits(client.user_id)
        await self.moderator.room_invite(self.room_id, client.user_id)
        await SynapseServer.join(client, self.room_id)
        self.people[name] = client
        return client

    def state(self) -> dict[str, list[tuple[Any, ...]]]:
        """The rows of the tables that commands change, read as a second process would."""
        with contextlib.closing(sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)) as db:
            return {
                table: sorted(db.execute(f"SELECT * FROM {table}").fetchall())
                for table in STATE_TABLES
            }


@contextlib.asynccontextmanager
async def stage(workdir: Path) -> AsyncIterator[Stage]:
    """Start everything; stop it all at the end, whatever happened."""
    synapse = SynapseServer(workdir / "synapse", strict_rate_limits=True)
    feed_server = FeedServer()
    clients: list[AsyncClient] = []
    process: CrieurProcess | None = None
    watcher: Watcher | None = None
    try:
        await synapse.astart()
        await feed_server.start()
        feeds = Feeds(feed_server)
        bot = await bot_account(synapse)
        moderator = await synapse.client("moderator")
        clients.append(moderator)
        await synapse.exempt_from_rate_limits(moderator.user_id)
        room_id = await SynapseServer.create_room(moderator, invite=[bot.user_id], join=False)
        directory = workdir / "bot"
        directory.mkdir()
        data = config_data(
            synapse=synapse,
            account=bot,
            feeds=feeds,
            database=Path("crieur.sqlite3"),
            language=LANGUAGE,
            rooms={"ile-de-france": [room_id]},
        )
        config = write_config(data, directory / "config.yaml")
        watcher = Watcher(moderator, room_id, bot.user_id)
        await watcher.start()
        process = await CrieurProcess(config).start()
        await feeds.wait_seeded()
        made = Stage(
            synapse,
            feeds,
            bot,
            room_id,
            moderator,
            {},
            process,
            directory / "crieur.sqlite3",
            watcher,
        )
        try:
            yield made
        finally:
            clients.extend(made.people.values())
    finally:
        if watcher is not None:
            await watcher.stop()
        if process is not None:
            await process.kill()
        for client in clients:
            await client.close()
        await feed_server.stop()
        await synapse.astop()


# -- checks ----------------------------------------------------------------------------------------


@dataclass
class PermissionResult:
    """Every state-changing command, each name and alias, sent by a non-moderator."""

    sent: list[str]
    refused: int  # answered with the permission message
    unanswered: list[str]
    wrong_answers: list[str]
    state_changed: bool
    control_changed: bool  # the same command by the moderator did change the state


def state_changing() -> list[CommandSpec]:
    """The commands the registry marks as changing a room's state."""
    return [spec for spec in build_registry().specs if spec.changes_state]


def permission_arguments(spec: CommandSpec) -> tuple[str, ...]:
    """What a state-changing command is tried with; a bare call that only reads is not."""
    # Names the room follows (a region, one of its organisations) and one it does not follow.
    arguments = ("april", "parinux", "ile de france", "")
    return tuple(argument for argument in arguments if argument or not spec.reads_when_bare)


async def permissions(stage: Stage, *, pace: float) -> PermissionResult:
    """Send every spelling of every state-changing command as a non-moderator."""
    refusal = t(LANGUAGE, "error.permission", level=50)
    before = await asyncio.to_thread(stage.state)
    bodies = [
        f"!{word} {argument}".rstrip()
        for spec in state_changing()
        for word in (spec.name, *spec.aliases)
        for argument in permission_arguments(spec)
    ]
    result = PermissionResult(bodies, 0, [], [], False, False)
    senders = itertools.cycle([await stage.person(f"guest{index}") for index in range(GUESTS)])
    pending: list[tuple[str, str]] = []
    for chunk in _chunks(bodies, BURST):
        client = next(senders)
        for body in chunk:
            pending.append((body, await SynapseServer.send_text(client, stage.room_id, body)))
        await asyncio.sleep(pace)  # the guests keep within the bot's own per-person limit
    for body, event_id in pending:
        seen = await stage.watcher.answer(event_id)
        if seen is None:
            result.unanswered.append(body)
        elif seen.body == refusal:
            result.refused += 1
        else:
            result.wrong_answers.append(f"{body!r} → {seen.body!r}")
    result.state_changed = await asyncio.to_thread(stage.state) != before
    # The control: the moderator's own command changes the state, so the check can fail.
    event_id, _ = await stage.send("moderator", "!subscribe april")
    await stage.watcher.answer(event_id)
    result.control_changed = await asyncio.to_thread(stage.state) != before
    return result


@dataclass
class BurstResult:
    """One person floods; another keeps asking."""

    flood: int
    flood_seconds: float
    flood_answers: int
    asked: int
    answer_times: list[float]
    unanswered: int
    answered_twice: int
    exited: bool
    baseline: float | None  # the same person's answer time before the flood


async def burst(stage: Stage, count: int, *, asks: int = 12) -> BurstResult:
    """`count` commands as fast as Synapse takes them from one person; another asks meanwhile."""
    flooder = await stage.person("flooder")
    await stage.person("alice")
    event_ids: list[str] = []
    asked: list[tuple[str, float]] = []
    times: list[float] = []
    unanswered = 0

    async def ask(body: str) -> None:
        nonlocal unanswered
        event_id, sent_at = await stage.send("alice", body)
        asked.append((event_id, sent_at))
        seen = await stage.watcher.answer(event_id)
        if seen is None:
            unanswered += 1
        else:
            times.append(seen.at - sent_at)

    async def flood() -> None:
        queue = iter(range(count))

        async def worker() -> None:
            for index in queue:
                body = FLOOD[index % len(FLOOD)]
                event_ids.append(await SynapseServer.send_text(flooder, stage.room_id, body))

        await asyncio.gather(*(worker() for _ in range(8)))

    # As a person does: ask, read the answer, ask again; before, during and after the flood.
    await ask("!regions")
    baseline = times.pop() if times else None
    asked.clear()
    unanswered = 0
    began = time.monotonic()
    flooding = asyncio.create_task(flood())
    await asyncio.sleep(1.0)
    while not flooding.done() and len(asked) < asks:
        await ask("!subscriptions")
        await asyncio.wait({flooding}, timeout=ASK_PAUSE)
    await flooding
    flood_seconds = time.monotonic() - began
    await ask("!help")
    await asyncio.sleep(3.0)  # late answers to the flood, if any, arrive
    twice = sum(1 for event_id, _ in asked if len(stage.watcher.answers(event_id)) > 1)
    flooded = set(event_ids)
    flood_answers = sum(1 for seen in stage.watcher.notices if seen.reply_to in flooded)
    return BurstResult(
        count,
        flood_seconds,
        flood_answers,
        len(asked),
        times,
        unanswered,
        twice,
        stage.process.exited,
        baseline,
    )


ODD_VARIANTS: Final = (
    "",
    "x" * HUGE,
    "april " + "é" * (HUGE // 2),
    "".join(chr(code) for code in range(1, 32)) + "\x7f",
    "\u202eenilrap\u202c \u2066april\u2069 \u200b\u200d\ufeff",
    bytes(range(128, 256)).decode("latin-1") + "\ufffd\U0001f4a5",
    "a\u0301" * 500,
    '"unclosed « quote “ and ' + "word " * 400,
)
# Near misses of a command, odd ones included: answered ("did you mean …?").
NEAR_MISSES: Final = ("!hepl", "!\u202eStâtuts", "!\u0000a\u0301bonnner\u0001")
# Odd command words that name no command and are no near miss of one: someone else's command,
# no answer.
ODD_WORDS: Final = ("!" + "y" * HUGE, "!\u202e" + "z" * 100, "!\u0000x\u0001")
# Not commands at all: a prefix followed by no letter or digit, like "!!!", gets no answer;
# nor do the odd words above.
NOT_COMMANDS: Final = ("!\x00\x01\x02", "!!!", "!\u202e\u200b", *ODD_WORDS)


def odd_arguments(*, short: bool = False) -> list[str]:
    """Every command with each kind of odd argument (short: each kind once, commands in turn)."""
    specs = build_registry().specs
    if short:
        pairs = [(specs[index % len(specs)], variant) for index, variant in enumerate(ODD_VARIANTS)]
    else:
        pairs = [(spec, variant) for spec in specs for variant in ODD_VARIANTS]
    return [f"!{spec.name} {variant}".rstrip() for spec, variant in pairs] + list(NEAR_MISSES)


@dataclass
class OddResult:
    sent: int
    unanswered: list[str]
    internal_errors: list[str]
    answered_not_commands: list[str]
    exited: bool


async def odd(stage: Stage, bodies: Sequence[str], *, pace: float) -> OddResult:
    """Send each odd command; each must get an answer that is not an internal error."""
    internal = t(LANGUAGE, "error.internal")
    senders = itertools.cycle([await stage.person(f"odd{index}") for index in range(GUESTS)])
    pending: list[tuple[str, str]] = []
    for chunk in _chunks([*NOT_COMMANDS, *bodies], BURST):
        client = next(senders)
        for body in chunk:
            pending.append((body, await SynapseServer.send_text(client, stage.room_id, body)))
        await asyncio.sleep(pace)
    result = OddResult(len(bodies) + len(NOT_COMMANDS), [], [], [], False)
    for body, event_id in pending:
        if body in NOT_COMMANDS:
            continue
        seen = await stage.watcher.answer(event_id)
        if seen is None:
            result.unanswered.append(_short(body))
        elif seen.body == internal:
            result.internal_errors.append(_short(body))
    # By now the answers to everything sent after them have arrived.
    result.answered_not_commands = [
        _short(body)
        for body, event_id in pending
        if body in NOT_COMMANDS and stage.watcher.answers(event_id)
    ]
    result.exited = stage.process.exited
    return result


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _short(body: str) -> str:
    return repr(body[:40]) + (f"…({len(body)} chars)" if len(body) > 40 else "")


@dataclass
class AbuseResult:
    permissions: PermissionResult
    burst: BurstResult
    odd: OddResult
    log: str


async def run(workdir: Path, *, burst_count: int, odd_bodies: Sequence[str]) -> AbuseResult:
    """The whole scenario; returns what each part saw."""
    async with stage(workdir) as made:
        flooded = await burst(made, burst_count)
        # The checks below count answers; the bot may answer at once for them.
        await made.synapse.exempt_from_rate_limits(made.bot.user_id)
        # Each guest sends BURST commands, then waits over BURST / RATE seconds: within its share.
        refused = await permissions(made, pace=BURST / GUESTS + 0.2)
        oddities = await odd(made, odd_bodies, pace=BURST / GUESTS + 0.2)
        return AbuseResult(refused, flooded, oddities, made.process.log)


def rows(result: AbuseResult, *, short: bool) -> list[Row]:
    """The report's three rows."""
    p, b, o = result.permissions, result.burst, result.odd
    times = sorted(b.answer_times)
    figure = (
        f"the other person's {b.asked} commands answered in median "
        f"{statistics.median(times):.1f} s, max {times[-1]:.1f} s"
        + (f" ({b.baseline:.1f} s before the flood)" if b.baseline is not None else "")
        if times
        else "the other person got no answer"
    )
    return [
        Row(
            "5a. state-changing commands from a non-moderator",
            len(p.sent),
            len(p.sent),
            len(p.unanswered) + len(p.wrong_answers) + (1 if p.state_changed else 0),
            0,
            0,
            "expected: commands (every name and alias of every command marked "
            "changes_state, with 4 arguments); lost: unanswered, answered other than "
            "with the refusal, or a change in follows/mutes/rooms"
            + ("" if p.control_changed else "; CONTROL FAILED: the moderator changed nothing"),
        ),
        Row(
            "5b. burst of commands from one person (strict homeserver rate limit)",
            b.flood,
            b.asked,
            b.unanswered,
            b.answered_twice,
            1 if b.exited else 0,
            f"runs: flood commands, sent in {b.flood_seconds:.0f} s, {b.flood_answers} answered; "
            f"expected: another person's commands during and after it; {figure}"
            + (" (short version)" if short else ""),
        ),
        Row(
            "5c. empty, huge, control, RTL and binary-looking arguments",
            o.sent,
            o.sent,
            len(o.unanswered) + len(o.internal_errors) + len(o.answered_not_commands),
            0,
            1 if o.exited else 0,
            f"every command × {len(ODD_VARIANTS)} kinds of argument"
            + (" (short: each kind once)" if short else "")
            + f", {len(NEAR_MISSES)} near misses of a command name (answered) and "
            f"{len(NOT_COMMANDS)} texts that are not commands of Crieur, {len(ODD_WORDS)} of "
            f"them odd command words (must get no answer); huge = {HUGE:,} characters "
            "(Synapse refuses events over 64 KiB, so 100 KB never reaches the bot); lost: no "
            "answer, an "
            "internal error, or an answer to a non-command",
        ),
    ]


async def scenario(full: bool, workdir: Path) -> list[Row]:
    """Scenario 5 for the report."""
    count = FULL_BURST if full else SHORT_BURST
    result = await run(workdir, burst_count=count, odd_bodies=odd_arguments(short=not full))
    return rows(result, short=not full)
