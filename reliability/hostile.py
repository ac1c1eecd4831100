"""What the hostile-feed and hostile-content scenarios share: feeds that grow, the services, a bot.

Each scenario runs `crieur run` as a separate process (so that its memory can be read) against
a real Synapse and a real local feed server, and reads what the rooms received as a member does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nio import AsyncClient, Event

from tests.e2e_support import (
    CrieurProcess,
    bot_account,
    content,
    matrix_section,
    reply_of,
    sender,
    write_config,
)
from tests.feed_server import FeedServer, rss
from tests.synapse_server import Account, SynapseServer

Item = dict[str, Any]
# Items (newest last) → the body and Content-Type served.
Encoder = Callable[[Sequence[Item]], tuple[bytes, str]]


def rss_encoder(items: Sequence[Item]) -> tuple[bytes, str]:
    """An RSS 2.0 document in UTF-8, newest item first as sites list them."""
    return rss(list(reversed(items)), title="Feed"), "application/rss+xml"


@dataclass
class GrowingFeed:
    """A feed on the feed server to which the scenario keeps adding items."""

    server: FeedServer
    slug: str
    encoder: Encoder = rss_encoder
    window: int = 50  # items served, the newest ones, as sites serve their latest posts
    items: list[Item] = field(default_factory=list)
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def path(self) -> str:
        return f"/{self.slug}.xml"

    @property
    def url(self) -> str:
        return self.server.url(self.path)

    def publish(self, *items: Item) -> None:
        """Add items and serve the new version (a new ETag, so unchanged polls get a 304)."""
        self.items.extend(items)
        body, content_type = self.encoder(self.items[-self.window :])
        self.server.set_feed(
            self.path, body, etag=f"{self.slug}-{next(self._versions)}", content_type=content_type
        )


def dated(minutes_ago: float) -> datetime:
    """A publication date within polling.max_age, so that new entries are posted."""
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes_ago)


@contextlib.asynccontextmanager
async def services(directory: Path) -> AsyncIterator[tuple[SynapseServer, FeedServer]]:
    """A Synapse and a feed server of their own, stopped on the way out."""
    synapse = SynapseServer(directory / "synapse")
    await synapse.astart()
    feeds = FeedServer()
    try:
        await feeds.start()
        yield synapse, feeds
    finally:
        await feeds.stop()
        await synapse.astop()
        synapse.close()


@dataclass
class Deployment:
    """A bot account, its configuration file and the `crieur run` process started on it."""

    synapse: SynapseServer
    account: Account
    directory: Path
    process: CrieurProcess | None = None

    @classmethod
    async def create(cls, synapse: SynapseServer, directory: Path) -> Deployment:
        return cls(synapse, await bot_account(synapse), directory)

    @property
    def user_id(self) -> str:
        return self.account.user_id

    @property
    def database(self) -> Path:
        return self.directory / "crieur.sqlite3"

    def config(
        self,
        *,
        regions: Mapping[str, Sequence[str]],
        organisations: Mapping[str, Mapping[str, Any]],
        polling: Mapping[str, Any] | None = None,
        name: str = "config.yaml",
    ) -> Path:
        """Write a configuration: `regions` maps each region to its rooms."""
        data: dict[str, Any] = {
            "matrix": matrix_section(self.synapse, self.account),
            "database": str(self.database),
            "language": "en",
            "polling": {
                "interval": "1s",
                "timeout": "3s",
                "max_posts_per_poll": 5,
                "allow_private_networks": True,
                **(polling or {}),
            },
            "regions": {
                slug: {"name": slug.capitalize(), **({"rooms": list(rooms)} if rooms else {})}
                for slug, rooms in regions.items()
            },
            "organisations": {slug: dict(value) for slug, value in organisations.items()},
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        return write_config(data, self.directory / name)

    async def start(self, config: Path) -> CrieurProcess:
        self.process = await CrieurProcess(config, log_level="info").start()
        return self.process

    async def stop(self) -> int | None:
        """SIGTERM the bot; return its exit code (None if it had already exited by itself)."""
        process = self.process
        if process is None:
            return None
        if process.exited:
            await process.kill()
            return None
        return await process.terminate(timeout=20)

    async def kill(self) -> None:
        if self.process is not None:
            await self.process.kill()


def organisation(slug: str, region: str, url: str, **extra: Any) -> dict[str, Any]:
    """One organisation of a configuration, with a single feed."""
    return {
        "name": slug.replace("-", " ").title(),
        "region": region,
        "url": f"https://{slug}.example.org/",
        "feeds": [url],
        **extra,
    }


def rss_memory(pid: int) -> tuple[int, int]:
    """A process's resident memory now and at its peak (VmRSS, VmHWM), in bytes."""
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


def bot_messages(events: Sequence[Event], bot: str) -> list[Event]:
    return [event for event in events if sender(event) == bot]


def bot_posts(events: Sequence[Event], bot: str) -> list[Event]:
    """The bot's relayed entries and digests: its notices that answer no command."""
    return [
        event
        for event in bot_messages(events, bot)
        if content(event).get("msgtype") == "m.notice" and reply_of(event) is None
    ]


def event_size(event: Event) -> int:
    """The size of an event's content as canonical JSON, in bytes."""
    text = json.dumps(content(event), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return len(text.encode("utf-8"))


async def room_for(owner: AsyncClient, bot: str, name: str) -> str:
    """A room created by `owner` (a moderator: its creator), the bot invited."""
    return await SynapseServer.create_room(owner, invite=[bot], join=False, name=name)


async def wait_until(check: Callable[[], Any], timeout: float, interval: float = 0.5) -> bool:  # noqa: ASYNC109
    """Poll an async `check` until it is true; return False on timeout instead of raising."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while not await check():  # noqa: ASYNC110
                await asyncio.sleep(interval)
            return True
    return False
