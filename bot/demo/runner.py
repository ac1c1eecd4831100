"""Run the whole demo: Synapse, accounts, rooms, sample feeds, the real bot and the echo.

Everything started here is stopped here, in reverse order, whether the demo ends by its
`--for` deadline, a signal or an error; Synapse is also killed at interpreter exit, and dies
with this process on Linux even when this process is SIGKILLed (see `homeserver`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import errno
import fcntl
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml
from nio import AsyncClient

from ..app import run_bot
from ..config import Config, Organisation, Region, parse_config, parse_duration
from ..errors import CrieurError
from ..logs import RedactSecrets
from . import DemoError
from .echo import Echo
from .feeds import CATALOGUE_FILE, FeedState, SampleFeeds, load_news, read_data
from .homeserver import SERVER_NAME, Homeserver
from .rooms import (
    ECHO_DEVICE,
    SETUP_DEVICE,
    Accounts,
    client,
    ensure_accounts,
    ensure_rooms,
    login,
    room_alias,
)

MARKER = ".crieur-demo"  # marks a directory the demo made, so --fresh never deletes another one
DEFAULT_PORT = 8008
DEFAULT_EVERY = 5.0
DEFAULT_DATA_DIR = Path(".crieur-demo")
MIN_EVERY = 1.0  # seconds; the feeds are local, but a person must still be able to read along


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What `crieur demo` was asked for."""

    port: int = DEFAULT_PORT
    fresh: bool = False
    every: float = DEFAULT_EVERY  # seconds between two new sample items
    duration: float | None = None  # seconds; None = until a signal
    data_dir: Path = DEFAULT_DATA_DIR


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The sample catalogue: the regions and organisations of the bundled example config."""

    regions: dict[str, Region]
    organisations: dict[str, Organisation]

    @classmethod
    def bundled(cls) -> Catalogue:
        """Read the copy of config.yaml.example bundled with the demo."""
        data = yaml.safe_load(read_data(CATALOGUE_FILE))
        config = parse_config(data, base_dir=Path.cwd(), env={})
        return cls(dict(config.regions), dict(config.organisations))

    def regions_with_organisations(self) -> list[Region]:
        """The regions that have organisations, in the order the organisations name them."""
        used = dict.fromkeys(organisation.region for organisation in self.organisations.values())
        return [self.regions[slug] for slug in used]


def demo_options(
    *, port: int, fresh: bool, every: str, duration: str | None, data_dir: str
) -> DemoOptions:
    """Check the command line's values; raise DemoError naming the option at fault."""
    if not 1 <= port <= 65535:
        raise DemoError(f"--port: {port} is not a port number (1 to 65535)")
    every_seconds = _duration_option("--every", every)
    duration_seconds = None if duration is None else _duration_option("--for", duration)
    if every_seconds < MIN_EVERY:
        raise DemoError(f"--every: at least {MIN_EVERY:g}s, please (not {every})")
    if duration_seconds is not None and duration_seconds <= 0:
        raise DemoError(f"--for: must be longer than zero, not {duration}")
    return DemoOptions(port, fresh, every_seconds, duration_seconds, Path(data_dir))


def _duration_option(option: str, value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as error:
        raise DemoError(f"{option}: {error}") from None


def run_demo(
    options: DemoOptions, *, out: TextIO | None = None, redactor: RedactSecrets | None = None
) -> int:
    """Run the demo until its deadline, SIGINT or SIGTERM; return the exit code (0 when asked)."""
    stream = sys.stdout if out is None else out

    def say(text: str = "") -> None:
        print(text, file=stream, flush=True)

    with _data_dir(options) as directory:
        return asyncio.run(_main(options, directory, say, redactor))


@contextlib.contextmanager
def _data_dir(options: DemoOptions) -> Iterator[Path]:
    """Create (or, with --fresh, recreate) the data directory and hold its lock."""
    directory = options.data_dir
    if directory.exists():
        if not directory.is_dir():
            raise DemoError(f"{directory} is not a directory: choose another --data-dir")
        if any(directory.iterdir()) and not (directory / MARKER).exists():
            raise DemoError(
                f"{directory} is not empty and was not made by `crieur demo` (no {MARKER} "
                f"file in it): choose another --data-dir"
            )
    if options.fresh and directory.exists():
        with _locked(directory):
            pass  # only to refuse deleting a directory another demo is using
        shutil.rmtree(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    marker = directory / MARKER
    if not marker.exists():
        marker.write_text(
            "Made by `crieur demo`: its homeserver, bot database and sample feeds.\n"
            "Delete it, or run `crieur demo --fresh`, to start over.\n",
            encoding="utf-8",
        )
    with _locked(directory):
        yield directory


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    with (directory / "lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.EACCES):
                raise DemoError(
                    f"another `crieur demo` is using {directory}: stop it first, or give this "
                    f"one another --data-dir"
                ) from None
            raise
        yield


async def _main(
    options: DemoOptions,
    directory: Path,
    say: Callable[[str], None],
    redactor: RedactSecrets | None,
) -> int:
    loop = asyncio.get_running_loop()
    deadline = None if options.duration is None else loop.time() + options.duration
    task = asyncio.current_task()
    assert task is not None
    stopping: list[int] = []

    def on_signal(signum: int) -> None:
        # A second Ctrl-C does not cut the clean-up short: it is bounded, and leaves nothing.
        first = not stopping
        stopping.append(signum)
        if first:
            task.cancel()
        with contextlib.suppress(OSError):  # after SIGHUP, the terminal may be gone
            say("\nStopping…" if first else "Still stopping (Synapse gets a few seconds)…")

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await _demo(options, directory, say, redactor, deadline)
    except asyncio.CancelledError:
        if not stopping:
            raise
        task.uncancel()
        return 0
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


async def _demo(
    options: DemoOptions,
    directory: Path,
    say: Callable[[str], None],
    redactor: RedactSecrets | None,
    deadline: float | None,
) -> int:
    began = time.monotonic()
    homeserver = Homeserver(directory / "synapse", options.port)
    homeserver.check()
    say("Crieur demo: a throwaway homeserver, sample feeds and the bot, all on this machine.")
    echo: Echo | None = None
    try:
        async with contextlib.AsyncExitStack() as stack:
            demo = await _start(options, directory, homeserver, stack, say)
            if redactor is not None:
                redactor.add(demo.accounts.bot_password, demo.accounts.password)
            _welcome(demo, options, say)
            names = {room_id: region.name for room_id, region in demo.rooms.items()}
            echo = Echo(demo.human, names, say)

            def ready() -> None:
                say(f"The bot is running ({time.monotonic() - began:.1f} s); what it posts:")

            try:
                async with asyncio.timeout_at(deadline):
                    await _run(demo, echo, options.every, ready)
            except TimeoutError:
                if deadline is None or asyncio.get_running_loop().time() < deadline:
                    raise
    except asyncio.CancelledError:
        if echo is not None:
            say(_summary(began, echo, directory))
        raise
    say(_summary(began, echo, directory))
    return 0


@dataclass(frozen=True, slots=True)
class _Started:
    """Everything the demo started, ready for the bot."""

    homeserver: Homeserver
    feeds: SampleFeeds
    accounts: Accounts
    human: AsyncClient  # logged in as the demo's human, a member of every room
    rooms: dict[str, Region]  # room id → its region
    config: Config


async def _start(
    options: DemoOptions,
    directory: Path,
    homeserver: Homeserver,
    stack: contextlib.AsyncExitStack,
    say: Callable[[str], None],
) -> _Started:
    """Start Synapse and the feeds, and set up accounts and rooms; `stack` stops them all."""
    catalogue = Catalogue.bundled()
    say(f"  Synapse    starting on {homeserver.base_url} …")
    # Registered before the start, so that even a failed start leaves nothing running.
    atexit.register(homeserver.kill)
    stack.callback(atexit.unregister, homeserver.kill)
    stack.push_async_callback(homeserver.stop)
    seconds = await homeserver.start()
    say(f"  Synapse    ready in {seconds:.1f} s; its logs are in {homeserver.directory}")

    feeds = SampleFeeds(
        catalogue.organisations,
        catalogue.regions,
        load_news(catalogue.organisations),
        FeedState(directory / "feeds.json"),
    )
    await feeds.start()
    stack.push_async_callback(feeds.stop)

    accounts = await ensure_accounts(homeserver, directory / "passwords.json")
    human = client(homeserver.base_url, accounts.user_id, ECHO_DEVICE)
    stack.push_async_callback(human.close)
    await login(human, accounts.password, "crieur demo: terminal echo")
    regions = catalogue.regions_with_organisations()
    room_ids = await _set_up_rooms(homeserver, accounts, human, regions)
    config = demo_config(options, directory, homeserver, accounts, catalogue, room_ids, feeds)
    rooms = {room_ids[region.slug]: region for region in regions}
    return _Started(homeserver, feeds, accounts, human, rooms, config)


def _welcome(demo: _Started, options: DemoOptions, say: Callable[[str], None]) -> None:
    """Say what runs where, and how to watch it from a Matrix client."""
    every = f"{options.every:g} s"
    first = next(iter(demo.rooms.values()))
    say(
        f"  Rooms      {len(demo.rooms)}, one per region that has organisations "
        f"({room_alias(first)}, …), made by the bot; you are in all of them"
    )
    feeds = len(demo.config.organisations)
    say(f"  Feeds      {feeds} on {demo.feeds.url('/')}: a new item every {every}")
    say(f"  Bot        {demo.accounts.bot_user_id}, polling every {every}")
    say("")
    say("Connect a Matrix client (e.g. Element desktop: Sign in → Edit the homeserver):")
    say(f"  homeserver  {demo.homeserver.base_url}")
    say(f"  user        {demo.accounts.user_id}")
    say(f"  password    {demo.accounts.password}")
    say("then open a room and type !help. Ctrl-C stops everything.")
    say("")


def _summary(began: float, echo: Echo, directory: Path) -> str:
    return (
        f"\nStopped after {time.monotonic() - began:.0f} s ({echo.posts} posts echoed); nothing "
        f"is left running. {directory} is kept for the next run (--fresh starts over)."
    )


async def _set_up_rooms(
    homeserver: Homeserver, accounts: Accounts, human: AsyncClient, regions: list[Region]
) -> dict[str, str]:
    """Create or find the rooms as the bot, from a device dropped once they are ready."""
    bot = client(homeserver.base_url, accounts.bot_user_id, SETUP_DEVICE)
    try:
        await login(bot, accounts.bot_password, "crieur demo: room set-up")
        try:
            return await ensure_rooms(bot, human, regions)
        finally:
            await bot.logout()
    finally:
        await bot.close()


async def _run(demo: _Started, echo: Echo, every: float, ready: Callable[[], None]) -> None:
    """Run the bot, the echo and the new items until cancelled, or until one of them fails."""
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(demo.homeserver.watch(), name="synapse")
            group.create_task(run_bot(demo.config, on_ready=ready), name="bot")
            group.create_task(echo.run(), name="echo")
            group.create_task(demo.feeds.release_forever(every), name="feeds")
    except BaseExceptionGroup as group_error:
        # Report the first error a person can act on, not a tree of tracebacks.
        for error in _leaves(group_error):
            if isinstance(error, CrieurError):
                raise error from group_error
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            yield from _leaves(error)
        else:
            yield error


def demo_config(
    options: DemoOptions,
    directory: Path,
    homeserver: Homeserver,
    accounts: Accounts,
    catalogue: Catalogue,
    room_ids: dict[str, str],
    feeds: SampleFeeds,
) -> Config:
    """The bot's configuration: the sample catalogue, its rooms and the local feeds."""
    urls = feeds.feed_urls()
    data: dict[str, Any] = {
        "matrix": {
            "homeserver": homeserver.base_url,
            "user_id": accounts.bot_user_id,
            "password": accounts.bot_password,
            "device_name": "crieur (demo)",
            "encryption": False,
            "admins": [accounts.user_id],
            "accept_invites_from": [SERVER_NAME],
        },
        "database": str(directory.absolute() / "crieur.sqlite3"),
        "language": "fr",
        "polling": {
            "interval": options.every,
            "timeout": "10s",
            "per_host": 4,  # every feed is on one local host
            "allow_private_networks": True,  # the feeds are on 127.0.0.1
        },
        "regions": {
            slug: {"name": region.name, **({"rooms": [room_ids[slug]]} if slug in room_ids else {})}
            for slug, region in catalogue.regions.items()
        },
        # No per-organisation intervals: in the demo every feed is polled at the same pace.
        "organisations": {
            slug: {
                "name": organisation.name,
                "region": organisation.region,
                **({"url": organisation.url} if organisation.url else {}),
                "feeds": [urls[slug]],
            }
            for slug, organisation in catalogue.organisations.items()
        },
    }
    return parse_config(data, base_dir=directory, env={})
