"""What the crash and outage scenarios share: `crieur run` relaying five organisations, each
into a room of its own, and the count of what the rooms really received."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from nio import AsyncClient

from tests.e2e_support import (
    CrieurProcess,
    bot_account,
    content,
    eventually,
    matrix_section,
    posts_from,
    unless_processes_exit,
    write_config,
)
from tests.feed_server import FeedServer, rss
from tests.synapse_server import Account, SynapseServer

from .report import Row

T = TypeVar("T")

ORGANISATIONS = 5
WAIT = 120.0  # seconds for anything the bot should do; generous, the machine may be busy


def posts_logged(lines: Sequence[str]) -> int:
    """How many messages a `crieur run` log says were posted."""
    return sum(1 for line in lines if "bot.dispatcher: posted " in line)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for the health listener."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def services(workdir: Path) -> AsyncIterator[tuple[SynapseServer, FeedServer]]:
    """A Synapse of its own (relaxed rate limits) and a feed server, for the runner."""
    synapse = SynapseServer(workdir / "synapse")
    feed_server = FeedServer()
    await synapse.astart()
    try:
        await feed_server.start()
        try:
            yield synapse, feed_server
        finally:
            await feed_server.stop()
    finally:
        await asyncio.to_thread(synapse.stop)


class OrgFeeds:
    """One RSS feed per organisation; items are dated in the order they are published."""

    def __init__(self, server: FeedServer, slugs: Sequence[str]) -> None:
        self.server = server
        self.slugs = list(slugs)
        self._serial = itertools.count(1)
        # In the past but within polling.max_age, a minute apart: the dates give the order.
        self._base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
        self._items: dict[str, list[dict[str, Any]]] = {slug: [] for slug in slugs}
        for slug in slugs:
            self.publish(slug, 2, label="archive")

    def url(self, slug: str) -> str:
        return self.server.url(f"/{slug}.xml")

    def hits(self, slug: str) -> int:
        return self.server.hits(f"/{slug}.xml")

    def publish(self, slug: str, count: int, *, label: str = "news", summary: int = 0) -> list[str]:
        """Add `count` items to the feed at once; return their titles, oldest first.

        `summary` pads each item's description to about that many characters.
        """
        titles = []
        for _ in range(count):
            serial = next(self._serial)
            title = f"{slug} {label} {serial:04d}"
            text = f"<p>{title}.</p>" + "<p>Lorem ipsum dolor sit amet.</p>" * (summary // 32)
            self._items[slug].append(
                {
                    "title": title,
                    "link": f"https://{slug}.example.org/news/{serial}",
                    "guid": f"https://{slug}.example.org/news/{serial}",
                    "pubDate": self._base + timedelta(minutes=serial),
                    "description": text,
                }
            )
            titles.append(title)
        items = list(reversed(self._items[slug]))  # sites list their newest item first
        body = rss(items, title=slug, language="fr")
        self.server.set_feed(f"/{slug}.xml", body, etag=f"{slug}-{len(items)}")
        return titles


@dataclass(frozen=True, slots=True)
class Tally:
    """What the rooms received compared with what they should have."""

    expected: int
    lost: int
    duplicated: int
    misordered: int  # (room, organisation) pairs whose entries came out of order

    def describe(self) -> str:
        """The order, in words, for the notes."""
        if not self.misordered:
            return "order kept"
        return f"{self.misordered} organisation(s) out of order in a room"


@dataclass
class Deployment:
    """A `crieur run` configuration on five organisations, and the processes started on it.

    Organisation `orgN` is in region `regionN`, whose room (created by `reader`, who stays a
    member and reads the history back) follows it from the start.
    """

    synapse: SynapseServer
    feeds: OrgFeeds
    directory: Path
    account: Account
    reader: AsyncClient
    rooms: dict[str, str]  # organisation → its region's room
    processes: list[CrieurProcess] = field(default_factory=list)
    stopped: set[int] = field(default_factory=set)  # ids of processes we killed or stopped
    expected: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # room → (org, title)
    health_url: str | None = None

    @classmethod
    async def create(
        cls,
        synapse: SynapseServer,
        feed_server: FeedServer,
        directory: Path,
        *,
        unhealthy_after: str | None = None,
    ) -> Deployment:
        """Register the bot and a reader, create the rooms, write the configuration."""
        slugs = [f"org{number}" for number in range(1, ORGANISATIONS + 1)]
        account = await bot_account(synapse)
        reader = await synapse.client("reader")
        rooms = {
            slug: await SynapseServer.create_room(reader, invite=[account.user_id], join=False)
            for slug in slugs
        }
        deployment = cls(synapse, OrgFeeds(feed_server, slugs), directory, account, reader, rooms)
        deployment.expected = {room: [] for room in rooms.values()}
        deployment._configure(unhealthy_after)
        return deployment

    @property
    def user_id(self) -> str:
        return self.account.user_id

    @property
    def database(self) -> Path:
        return self.directory / "data" / "crieur.sqlite3"

    def _configure(self, unhealthy_after: str | None) -> None:
        data: dict[str, Any] = {
            "matrix": {**matrix_section(self.synapse, self.account), "accept_invites_from": []},
            "database": "data/crieur.sqlite3",
            "language": "en",
            "polling": {
                "interval": "1s",
                "timeout": "5s",
                "max_posts_per_poll": 100,
                "allow_private_networks": True,
            },
            "regions": {
                f"region{slug[3:]}": {"name": f"Region {slug[3:]}", "rooms": [room]}
                for slug, room in self.rooms.items()
            },
            "organisations": {
                slug: {
                    "name": slug,
                    "region": f"region{slug[3:]}",
                    "url": f"https://{slug}.example.org/",
                    "feeds": [self.feeds.url(slug)],
                }
                for slug in self.rooms
            },
        }
        if unhealthy_after is not None:
            port = free_port()
            data["http"] = {"listen": f"127.0.0.1:{port}", "unhealthy_after": unhealthy_after}
            self.health_url = f"http://127.0.0.1:{port}/health"
        self.directory.mkdir(parents=True, exist_ok=True)
        write_config(data, self.directory / "config.yaml")

    # -- processes ------------------------------------------------------------------------------

    async def start(self, *, wait_running: bool = True, log_level: str = "info") -> CrieurProcess:
        """Start `crieur run`; with `wait_running`, return once it polls (pending rows sent)."""
        process = CrieurProcess(self.directory / "config.yaml", log_level=log_level)
        self.processes.append(process)
        return await process.start(wait_running=wait_running)

    async def kill(self, process: CrieurProcess) -> None:
        """SIGKILL the process, as a crash or an out-of-memory killer would."""
        self.stopped.add(id(process))
        await process.kill()

    async def terminate(self, process: CrieurProcess) -> int:
        """SIGTERM the process; return its exit code."""
        self.stopped.add(id(process))
        return await process.terminate(timeout=30)

    async def close(self) -> None:
        """Kill what is still running (after a failure) and close the reader."""
        for process in self.processes:
            if not process.exited:
                await self.kill(process)
        # Kept beside the database, to read after a failed test.
        for number, process in enumerate(self.processes, 1):
            (self.directory / f"crieur-run-{number}.log").write_text(process.log, "utf-8")
        await self.reader.close()

    def crashes(self) -> int:
        """Processes that died by themselves or logged a traceback."""
        return sum(
            1
            for process in self.processes
            if (process.exited and id(process) not in self.stopped) or "Traceback" in process.log
        )

    def crash_logs(self) -> str:
        return "\n\n".join(
            process.log
            for process in self.processes
            if (process.exited and id(process) not in self.stopped) or "Traceback" in process.log
        )

    async def guard(self, awaitable: Awaitable[T]) -> T:
        """Await, failing at once (with the log) if a running `crieur run` exits by itself."""
        return await unless_processes_exit(awaitable, self.processes, self.crash_logs)

    async def wait_log(
        self,
        process: CrieurProcess,
        check: Callable[[list[str]], bool],
        what: str,
        *,
        interval: float = 0.002,
    ) -> None:
        """Wait until the process's log satisfies `check` (polled often: kills aim at moments)."""
        await self.guard(
            eventually(lambda: check(process.lines), WAIT, what=what, interval=interval)
        )

    # -- feeds and rooms ------------------------------------------------------------------------

    async def wait_seeded(self) -> None:
        """Wait until every feed's first fetch is recorded (its second one was sent)."""
        await self.guard(
            eventually(
                lambda: all(self.feeds.hits(slug) >= 2 for slug in self.rooms),
                WAIT,
                what="first polls",
            )
        )

    async def quiet(self, polls: int = 2) -> None:
        """Let every feed be polled a few more times, so that whatever was due has arrived."""
        targets = {slug: self.feeds.hits(slug) + polls for slug in self.rooms}
        await self.guard(
            eventually(
                lambda: all(self.feeds.hits(slug) >= n for slug, n in targets.items()),
                WAIT,
                what="more polls",
            )
        )

    def publish(
        self, slug: str, count: int, *, rooms: Sequence[str] = (), summary: int = 0
    ) -> list[str]:
        """Publish entries that must reach the organisation's room (and `rooms`) once each."""
        titles = self.feeds.publish(slug, count, summary=summary)
        for room in (self.rooms[slug], *rooms):
            self.expected[room].extend((slug, title) for title in titles)
        return titles

    def query(self, sql: str, *parameters: object) -> int:
        """One number from the bot's database (read-only; WAL lets it run beside the bot)."""
        uri = f"file:{self.database}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as db:
            row = db.execute(sql, parameters).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    async def sent(self) -> int:
        """Outbox rows the homeserver accepted."""
        return await asyncio.to_thread(
            self.query, "SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL"
        )

    async def stored(self, titles: Sequence[str]) -> int:
        """How many of these titles the database has recorded."""
        marks = ",".join("?" * len(titles))
        return await asyncio.to_thread(
            self.query, f"SELECT COUNT(*) FROM entries WHERE title IN ({marks})", *titles
        )

    async def titles_in(self, room: str) -> list[str]:
        """The expected titles the bot's posts in the room carry, in the order they came.

        Read back as a member reads the history; a post's body holds its title on a line.
        """
        wanted = {title for _, title in self.expected[room]}
        events = await SynapseServer.timeline(self.reader, room)
        return [
            line
            for event in posts_from(events, self.user_id)
            for line in str(content(event).get("body", "")).splitlines()
            if line in wanted
        ]

    async def wait_delivered(self) -> None:
        """Wait until every expected title is in its room."""

        async def arrived() -> bool:
            for room, wanted in self.expected.items():
                found = set(await self.titles_in(room))
                if any(title not in found for _, title in wanted):
                    return False
            return True

        await self.guard(eventually(arrived, WAIT, what="every entry", interval=0.5))

    async def tally(self) -> Tally:
        """Count, from the rooms' history, what was lost, duplicated or out of order."""
        expected = lost = duplicated = misordered = 0
        for room, wanted in self.expected.items():
            found = await self.titles_in(room)
            expected += len(wanted)
            lost += len({title for _, title in wanted} - set(found))
            duplicated += len(found) - len(set(found))
            for slug in {slug for slug, _ in wanted}:
                order = [title for org, title in wanted if org == slug]
                seen = list(dict.fromkeys(title for title in found if title in order))
                if seen != [title for title in order if title in seen]:
                    misordered += 1
        return Tally(expected, lost, duplicated, misordered)

    async def aborted(self, scenario: str, runs: int, error: Exception) -> Row:
        """The row of a scenario stopped by a crash or a wait that timed out: what the rooms
        hold at that point, and the crashes; raise `error` again if that shows no failure."""
        tally = await self.tally()
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        row = Row(
            scenario,
            runs,
            tally.expected,
            tally.lost,
            tally.duplicated,
            self.crashes(),
            f"aborted: {reason} (the log of `crieur run` is on stderr)",
        )
        if row.passed:
            raise error
        last = self.processes[-1].lines[-40:] if self.processes else []
        print(self.crash_logs() or "\n".join(last), file=sys.stderr)
        return row

    async def health(self) -> tuple[int | None, str]:
        """GET /health: its status (None if nothing answers) and the homeserver check."""
        assert self.health_url is not None
        try:
            timeout = aiohttp.ClientTimeout(total=5)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(self.health_url) as response,
            ):
                body = await response.json()
                return response.status, str(body.get("checks", {}).get("homeserver"))
        except (aiohttp.ClientError, TimeoutError) as error:
            return None, type(error).__name__
