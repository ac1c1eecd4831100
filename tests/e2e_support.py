"""Helpers of the end-to-end tests: a small catalogue served by the local feed server, the
bot's configuration for a given Synapse, the bot running (in this process or as `crieur run`),
and reading what arrived in a room.

Every helper observes what a user could: the feed server's request log (to know the bot has
polled), the rooms' timelines as a member reads them, exit codes, HTTP answers, log lines.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import itertools
import os
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import yaml
from nio import AsyncClient, Event, RoomGetStateEventResponse, RoomSendResponse

from bot.app import run_bot
from bot.config import Config, parse_config
from tests.feed_server import FeedServer, rss
from tests.synapse_server import Account, SynapseServer

T = TypeVar("T")

WAIT = 20.0  # seconds for something that should happen within a few poll intervals
POLL_INTERVAL = "1s"

REGIONS: Mapping[str, str] = {
    "ile-de-france": "Île-de-France",
    "bretagne": "Bretagne",
    "france": "France",
}


@dataclass(frozen=True, slots=True)
class Org:
    """An organisation of the test catalogue; its feed is served at `path`."""

    slug: str
    name: str
    region: str

    @property
    def path(self) -> str:
        return f"/{self.slug}.xml"

    @property
    def homepage(self) -> str:
        return f"https://{self.slug}.example.org/"


ORGANISATIONS: Mapping[str, Org] = {
    org.slug: org
    for org in (
        Org("parinux", "Parinux", "ile-de-france"),
        Org("ubuntu-paris", "Ubuntu Paris", "ile-de-france"),
        Org("infini", "Infini", "bretagne"),
        Org("april", "April", "france"),
    )
}

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


# -- feeds ---------------------------------------------------------------------------------------


class Feeds:
    """One RSS feed per organisation on the feed server; each starts with two old items.

    `publish` adds items the way a site does (newest first in the XML, each dated after the
    previous one), so the order in which they must arrive is the order of the calls.
    """

    def __init__(self, server: FeedServer) -> None:
        self.server = server
        self._serial = itertools.count(1)
        # Dated in the past but within polling.max_age, spaced so that the order is the dates'.
        self._base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        self._items: dict[str, list[dict[str, Any]]] = {}
        for org in ORGANISATIONS.values():
            self._items[org.slug] = []
            for title in (f"{org.name} : bilan de l'année", f"{org.name} : assemblée générale"):
                self._items[org.slug].append(self._item(org.slug, title, None))
            self._serve(org.slug)

    def url(self, slug: str) -> str:
        return self.server.url(ORGANISATIONS[slug].path)

    def hits(self, slug: str) -> int:
        return self.server.hits(ORGANISATIONS[slug].path)

    def initial_titles(self, slug: str) -> list[str]:
        return [item["title"] for item in self._items[slug][:2]]

    def publish(self, slug: str, title: str, *, summary: str | None = None) -> str:
        """Add one item to the organisation's feed; return its title."""
        self._items[slug].append(self._item(slug, title, summary))
        self._serve(slug)
        return title

    def publish_many(self, slug: str, titles: Sequence[str]) -> list[str]:
        """Add several items at once (one version of the feed holds them all)."""
        for title in titles:
            self._items[slug].append(self._item(slug, title, None))
        self._serve(slug)
        return list(titles)

    async def wait_polls(
        self,
        count: int,
        slugs: Iterable[str] | None = None,
        timeout: float = WAIT,  # noqa: ASYNC109
    ) -> None:
        """Wait until each feed has answered `count` more requests than now.

        The bot polls a feed once at a time, so two more requests mean the first of them has
        been fetched, parsed and recorded.
        """
        chosen = list(ORGANISATIONS if slugs is None else slugs)
        targets = {slug: self.hits(slug) + count for slug in chosen}
        await eventually(
            lambda: all(self.hits(slug) >= target for slug, target in targets.items()),
            timeout,
            what=f"{count} more polls of {', '.join(chosen)}",
        )

    async def wait_seeded(self, slugs: Iterable[str] | None = None) -> None:
        """Wait until every feed's first fetch has been recorded (its second one was sent).

        Counted since the feed server started: after a restart of the bot, this returns at once.
        """
        chosen = list(ORGANISATIONS if slugs is None else slugs)
        await eventually(
            lambda: all(self.hits(slug) >= 2 for slug in chosen),
            WAIT,
            what=f"first polls of {', '.join(chosen)}",
        )

    def _item(self, slug: str, title: str, summary: str | None) -> dict[str, Any]:
        serial = next(self._serial)
        return {
            "title": title,
            "link": f"{ORGANISATIONS[slug].homepage}news/{serial}",
            "guid": f"{ORGANISATIONS[slug].homepage}news/{serial}",
            "pubDate": self._base + timedelta(minutes=serial),
            "description": summary if summary is not None else f"<p>{title}.</p>",
        }

    def _serve(self, slug: str) -> None:
        org = ORGANISATIONS[slug]
        items = list(reversed(self._items[slug]))  # sites list their newest item first
        # A new ETag for each version, as most sites send: unchanged polls get a 304.
        etag = f"{slug}-{len(items)}"
        self.server.set_feed(org.path, rss(items, title=org.name, language="fr"), etag=etag)


# -- configuration -------------------------------------------------------------------------------


def matrix_section(synapse: SynapseServer, account: Account) -> dict[str, Any]:
    """The `matrix` part of a configuration for `account` on `synapse`, nobody an admin."""
    return {
        "homeserver": synapse.base_url,
        "user_id": account.user_id,
        "password": account.password,
        "device_name": "crieur",
        "admins": [],
        "manage_power_level": 50,
    }


def config_data(
    *,
    synapse: SynapseServer,
    account: Account,
    feeds: Feeds,
    database: Path,
    language: str = "fr",
    rooms: Mapping[str, Sequence[str]] | None = None,
    accept_invites_from: Sequence[str] = (),
    max_posts_per_poll: int = 5,
    http: Mapping[str, Any] | None = None,
    organisations: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The YAML data of a configuration: the test catalogue (or some of its organisations),
    polled every second."""
    rooms = rooms or {}
    chosen = list(ORGANISATIONS if organisations is None else organisations)
    regions: dict[str, Any] = {}
    for slug, name in REGIONS.items():
        regions[slug] = {"name": name}
        if rooms.get(slug):
            regions[slug]["rooms"] = list(rooms[slug])
    data: dict[str, Any] = {
        "matrix": {
            **matrix_section(synapse, account),
            "accept_invites_from": list(accept_invites_from),
        },
        "database": str(database),
        "language": language,
        "polling": {
            "interval": POLL_INTERVAL,
            "timeout": "3s",
            "max_posts_per_poll": max_posts_per_poll,
            "allow_private_networks": True,
        },
        "regions": regions,
        "organisations": {
            slug: {
                "name": ORGANISATIONS[slug].name,
                "region": ORGANISATIONS[slug].region,
                "url": ORGANISATIONS[slug].homepage,
                "feeds": [feeds.url(slug)],
            }
            for slug in chosen
        },
    }
    if http is not None:
        data["http"] = dict(http)
    return data


def load(data: Mapping[str, Any], base_dir: Path) -> Config:
    """Validate configuration data as `crieur run` would."""
    return parse_config(dict(data), base_dir=base_dir, env={})


def write_config(data: Mapping[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(dict(data), allow_unicode=True, sort_keys=False), "utf-8")
    return path


# -- the bot in this process --------------------------------------------------------------------


class RunningBot:
    """`run_bot` as a task of the test's event loop; `stop()` cancels it as a signal would."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._task: asyncio.Task[None] | None = None

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The running bot; None once stopped by the test."""
        return self._task

    async def start(self, timeout: float = 30.0) -> RunningBot:  # noqa: ASYNC109
        """Start the bot and return once it polls and delivers; raise what stopped it early."""
        ready = asyncio.Event()
        task = self._task = asyncio.create_task(run_bot(self.config, on_ready=ready.set))
        waiter = asyncio.create_task(ready.wait())
        try:
            done, _ = await asyncio.wait(
                {task, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
        if task in done:
            task.result()  # raises what ended it
            raise AssertionError("the bot stopped by itself")
        if not done:
            raise TimeoutError(f"the bot was not ready after {timeout} s")
        return self

    async def stop(self) -> None:
        """Cancel the bot and wait until it has closed its database and connections."""
        task, self._task = self._task, None
        if task is None:
            return
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- the bot as a process -----------------------------------------------------------------------


class CrieurProcess:
    """`python -m bot [--log-level L] run -c CONFIG`, its stderr collected line by line."""

    def __init__(self, config_path: Path, *, log_level: str = "info") -> None:
        self.config_path = config_path
        self.log_level = log_level
        self.lines: list[str] = []
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    @property
    def pid(self) -> int | None:
        """The process id (to read its memory use in /proc), None before `start`."""
        return None if self._process is None else self._process.pid

    async def start(self, *, wait_running: bool = True) -> CrieurProcess:
        """Start the process and wait until it says it runs (raise with its log if it ends)."""
        environment = {
            name: value
            for name, value in os.environ.items()
            if name.lower() not in _PROXY_VARIABLES and not name.startswith("CRIEUR_")
        }
        self.lines = []
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "--log-level",
            self.log_level,
            "run",
            "-c",
            str(self.config_path),
            cwd=self.config_path.parent,
            env=environment,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read(self._process))
        if not wait_running:
            return self
        try:
            await eventually(
                lambda: any("running as" in line for line in self.lines) or self.exited,
                45.0,
                what="crieur run to start",
            )
        except TimeoutError:
            raise TimeoutError(f"crieur run did not start:\n{self.log}") from None
        if self.exited:
            await self._reader
            raise AssertionError(f"crieur run exited with {self.returncode}:\n{self.log}")
        return self

    @property
    def exited(self) -> bool:
        return self._process is not None and self._process.returncode is not None

    @property
    def ended(self) -> asyncio.Task[None] | None:
        """Done once the process has exited and its log has been read."""
        return self._reader

    async def wait(self, timeout: float = 30.0) -> int:  # noqa: ASYNC109
        """Wait until the process exits by itself and its log is read; return its exit code."""
        assert self._process is not None and self._reader is not None, "not started"
        async with asyncio.timeout(timeout):
            await self._reader
        assert self._process.returncode is not None
        return self._process.returncode

    async def terminate(self, timeout: float = 10.0) -> int:  # noqa: ASYNC109
        """SIGTERM the process; return its exit code (raise if it outlives `timeout`)."""
        process = self._process
        assert process is not None, "not started"
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout):
                code = await process.wait()
                if self._reader is not None:
                    await self._reader
        except TimeoutError:
            raise AssertionError(
                f"crieur run still running {timeout} s after SIGTERM:\n{self.log}"
            ) from None
        return code

    async def kill(self) -> None:
        """SIGKILL the process if it still runs (teardown of a failed test)."""
        process = self._process
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()
        if self._reader is not None:
            await self._reader

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        while line := await process.stderr.readline():
            self.lines.append(line.decode("utf-8", "replace").rstrip("\n"))
        await process.wait()


# -- waiting -------------------------------------------------------------------------------------


async def bot_account(synapse: SynapseServer) -> Account:
    """Register a fresh account for the bot, with a password of its own."""
    password = "pw-" + secrets.token_urlsafe(18)
    return await synapse.register_account(synapse.unique_localpart("crieur"), password)


QUIET_POLLS = 2  # poll intervals waited before saying that something did not arrive


class BotWaits(abc.ABC):
    """Waits on a running bot that fail at once, with its error, if it stops by itself."""

    account: Account
    feeds: Feeds

    @property
    def user_id(self) -> str:
        """The bot's user id."""
        return self.account.user_id

    @abc.abstractmethod
    async def guard(self, awaitable: Awaitable[T]) -> T:
        """Await `awaitable`, failing as soon as the bot stops by itself."""

    async def wait_seeded(self, *slugs: str) -> None:
        """Wait until the bot has seeded these feeds (all if none)."""
        await self.guard(self.feeds.wait_seeded(slugs or None))

    async def quiet(self, *slugs: str) -> None:
        """Let the bot poll these feeds a few more times, so whatever was due has arrived."""
        await self.guard(self.feeds.wait_polls(QUIET_POLLS, slugs or None))

    async def wait_for_titles(
        self,
        client: AsyncClient,
        room_id: str,
        titles: list[str],
        timeout: float = WAIT,  # noqa: ASYNC109
    ) -> list[Event]:
        """Wait until the bot has posted these titles into the room."""
        return await self.guard(wait_for_titles(client, room_id, self.user_id, titles, timeout))

    async def command(self, client: AsyncClient, room_id: str, text: str) -> tuple[str, Event]:
        """Send a command as `client`; return its event id and the bot's reply."""
        return await self.guard(command(client, room_id, text))


async def eventually(
    check: Callable[[], bool | Awaitable[bool]],
    timeout: float = WAIT,  # noqa: ASYNC109
    *,
    what: str = "condition",
    interval: float = 0.1,
) -> None:
    """Poll `check` until it holds; raise TimeoutError naming `what`."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = check()
                if not isinstance(result, bool):
                    result = await result
                if result:
                    return
                await asyncio.sleep(interval)
    except TimeoutError:
        raise TimeoutError(f"no {what} after {timeout} s") from None


async def unless_stopped(awaitable: Awaitable[T], watched: Iterable[asyncio.Future[Any]]) -> T:
    """Await `awaitable`, but fail at once if a `watched` task (a bot) ends meanwhile.

    A bot that crashed would otherwise show as a long timeout while waiting for its messages.
    """
    waiter = asyncio.ensure_future(awaitable)
    bots = set(watched)
    try:
        await asyncio.wait({waiter, *bots}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not waiter.done():
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
    if not waiter.cancelled():
        return waiter.result()
    ended = next(bot for bot in bots if bot.done())
    error = None if ended.cancelled() else ended.exception()
    raise AssertionError(f"the bot stopped by itself ({error!r})") from error


async def unless_processes_exit(
    awaitable: Awaitable[T], processes: Iterable[CrieurProcess], logs: Callable[[], str]
) -> T:
    """Await `awaitable`, failing at once with `logs()` if a running `crieur run` exits."""
    running = [process for process in processes if not process.exited]
    watched = [process.ended for process in running if process.ended is not None]
    try:
        return await unless_stopped(awaitable, watched)
    except AssertionError as error:
        raise AssertionError(f"crieur run exited by itself:\n{logs()}") from error


async def send_encrypted(client: AsyncClient, room_id: str, body: str) -> str:
    """Send a text message, encrypted if the room is; return its event id."""
    response = await client.room_send(
        room_id,
        "m.room.message",
        {"msgtype": "m.text", "body": body},
        ignore_unverified_devices=True,
    )
    assert isinstance(response, RoomSendResponse), response
    return str(response.event_id)


# -- rooms ---------------------------------------------------------------------------------------


def content(event: Event) -> dict[str, Any]:
    value = event.source.get("content", {})
    return value if isinstance(value, dict) else {}


def sender(event: Event) -> str:
    return str(event.source.get("sender", ""))


def reply_of(event: Event) -> str | None:
    """The event id this message answers (`m.relates_to.m.in_reply_to.event_id`), if any."""
    relation = content(event).get("m.relates_to")
    reply = relation.get("m.in_reply_to") if isinstance(relation, dict) else None
    target = reply.get("event_id") if isinstance(reply, dict) else None
    return target if isinstance(target, str) else None


def notices_from(events: Sequence[Event], user_id: str) -> list[Event]:
    """The bot's notices among a room's messages, oldest first."""
    return [
        event
        for event in events
        if sender(event) == user_id and content(event).get("msgtype") == "m.notice"
    ]


def posts_from(events: Sequence[Event], user_id: str) -> list[Event]:
    """The bot's relayed entries (notices that answer no command), oldest first."""
    return [event for event in notices_from(events, user_id) if reply_of(event) is None]


def titles_posted(events: Sequence[Event], user_id: str, titles: Iterable[str]) -> list[str]:
    """Which of these titles the bot's posts carry, once per post, in the order they came."""
    wanted = list(titles)
    found: list[str] = []
    for event in posts_from(events, user_id):
        body = str(content(event).get("body", ""))
        found.extend(title for title in wanted if title in body.splitlines())
    return found


def replies_to(events: Sequence[Event], event_id: str) -> list[Event]:
    return [event for event in events if reply_of(event) == event_id]


async def wait_for_titles(
    client: AsyncClient,
    room_id: str,
    bot: str,
    titles: Sequence[str],
    timeout: float = WAIT,  # noqa: ASYNC109
) -> list[Event]:
    """Wait until each title has been posted in the room; return the room's messages."""
    return await SynapseServer.wait_for_messages(
        client,
        room_id,
        lambda events: set(titles) <= set(titles_posted(events, bot, titles)),
        timeout,
    )


async def wait_for_reply(
    client: AsyncClient,
    room_id: str,
    event_id: str,
    timeout: float = WAIT,  # noqa: ASYNC109
) -> Event:
    """Wait for the bot's answer to the message `event_id`; return it."""
    events = await SynapseServer.wait_for_messages(
        client, room_id, lambda events: bool(replies_to(events, event_id)), timeout
    )
    return replies_to(events, event_id)[0]


async def command(client: AsyncClient, room_id: str, text: str) -> tuple[str, Event]:
    """Send a command as `client`; return its event id and the bot's answer."""
    event_id = await SynapseServer.send_text(client, room_id, text)
    return event_id, await wait_for_reply(client, room_id, event_id)


async def membership(client: AsyncClient, room_id: str, user_id: str) -> str | None:
    """`user_id`'s membership in the room, as `client` (a member) sees it."""
    response = await client.room_get_state_event(room_id, "m.room.member", user_id)
    if isinstance(response, RoomGetStateEventResponse):
        value = response.content.get("membership")
        return value if isinstance(value, str) else None
    return None


async def wait_for_membership(
    client: AsyncClient,
    room_id: str,
    user_id: str,
    expected: str,
    timeout: float = WAIT,  # noqa: ASYNC109
) -> None:
    async def check() -> bool:
        return await membership(client, room_id, user_id) == expected

    await eventually(check, timeout, what=f"{expected} of {user_id} in {room_id}")
