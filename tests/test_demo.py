"""`crieur demo`: bundled data, sample feeds, and whole runs of the command as a user starts it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import html
import itertools
import os
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from nio import (
    AsyncClient,
    LoginResponse,
    MessageDirection,
    RoomGetStateResponse,
    RoomMessagesResponse,
    RoomResolveAliasResponse,
)

from bot.demo import DemoError
from bot.demo.feeds import FeedState, SampleFeeds, load_news, read_data, rotation
from bot.demo.runner import Catalogue, demo_options
from bot.parser import parse

ROOT = Path(__file__).resolve().parent.parent
BOT = "@crieur:localhost"


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.bundled()


# -- bundled data ------------------------------------------------------------------------------


def test_bundled_catalogue_is_the_example_configuration() -> None:
    example = (ROOT / "config.yaml.example").read_text(encoding="utf-8")
    assert read_data("config.yaml.example") == example, "copy config.yaml.example to bot/demo/data"


def test_every_organisation_starts_with_two_or_three_items_and_has_more_to_come(
    catalogue: Catalogue,
) -> None:
    news = load_news(catalogue.organisations)

    for slug in catalogue.organisations:
        assert 2 <= len(news.published[slug]) <= 3, slug
        assert len(news.upcoming[slug]) >= 2, slug


def test_new_items_rotate_over_regions_so_posts_land_in_different_rooms(
    catalogue: Catalogue,
) -> None:
    by_region: dict[str, list[str]] = {}
    for slug, organisation in catalogue.organisations.items():
        by_region.setdefault(organisation.region, []).append(slug)
    order = rotation(list(by_region.values()))

    regions = [catalogue.organisations[next(order)].region for _ in range(3 * len(by_region))]

    assert len(set(regions[: len(by_region)])) == len(by_region)
    assert all(a != b for a, b in itertools.pairwise(regions))


def test_options_name_the_one_at_fault() -> None:
    options = functools.partial(demo_options, port=8008, fresh=False, data_dir="d")
    with pytest.raises(DemoError, match="--every"):
        options(every="soon", duration=None)
    with pytest.raises(DemoError, match="--for"):
        options(every="5s", duration="0s")
    assert options(every="2s", duration="1m").duration == 60.0


# -- the sample feed server --------------------------------------------------------------------


@pytest.fixture
async def sample_feeds(tmp_path: Path, catalogue: Catalogue) -> AsyncIterator[SampleFeeds]:
    feeds = SampleFeeds(
        catalogue.organisations,
        catalogue.regions,
        load_news(catalogue.organisations),
        FeedState(tmp_path / "feeds.json"),
    )
    await feeds.start()
    yield feeds
    await feeds.stop()


async def test_a_sample_feed_parses_and_answers_304_to_its_etag(sample_feeds: SampleFeeds) -> None:
    url = sample_feeds.feed_urls()["framasoft"]
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            body = await response.read()
            etag = response.headers["ETag"]
        async with session.get(url, headers={"If-None-Match": etag}) as response:
            assert response.status == 304

    entries = parse(body, feed_url=url)
    assert len(entries) == 3
    # Entities in titles are decoded, as in the feeds WordPress writes.
    assert "Khrys’presso du lundi 12 janvier 2026" in [entry.title for entry in entries]
    assert all(entry.published is not None for entry in entries)


async def test_a_new_item_changes_its_feed_and_survives_a_restart(
    tmp_path: Path, sample_feeds: SampleFeeds, catalogue: Catalogue
) -> None:
    release = sample_feeds.release()
    slug = release.item.organisation
    url = sample_feeds.feed_urls()[slug]
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        entries = parse(await response.read(), feed_url=url)
    assert entries[-1].title == html.unescape(release.item.title)
    assert len(entries) == len(load_news([slug]).published[slug]) + 1

    again = SampleFeeds(
        catalogue.organisations,
        catalogue.regions,
        load_news(catalogue.organisations),
        FeedState(tmp_path / "feeds.json"),
    )
    assert [r.item for r in again.releases(slug)] == [release.item]
    assert again.release().item.organisation != slug  # the rotation goes on


# -- whole runs of `crieur demo` ---------------------------------------------------------------


@dataclass
class DemoRun:
    process: asyncio.subprocess.Process
    data_dir: Path
    stderr_path: Path
    lines: list[str]

    async def read_until(self, pattern: str, timeout: float = 60) -> re.Match[str]:  # noqa: ASYNC109
        """Read the demo's output until a line matches; return the match."""
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    raise AssertionError(f"the demo ended early:\n{self.output()}")
                line = raw.decode().rstrip("\n")
                self.lines.append(line)
                match = re.search(pattern, line)
                if match:
                    return match

    async def finish(self, timeout: float = 30) -> int:  # noqa: ASYNC109
        """Wait for the demo to exit, keeping its output; return its exit code."""
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            rest = await self.process.stdout.read()
            code = await self.process.wait()
        self.lines.extend(rest.decode().splitlines())
        return code

    def output(self) -> str:
        stderr = self.stderr_path.read_text(errors="replace")
        return "\n".join(self.lines) + "\n--- stderr ---\n" + stderr

    def synapse_pid(self) -> int:
        return int((self.data_dir / "synapse" / "synapse.pid").read_text())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def crieur_demo(
    tmp_path: Path, *args: str, data_dir: Path | None = None
) -> AsyncIterator[DemoRun]:
    """Start `python -m bot demo` in tmp_path, in a session of its own; kill what is left after.

    Without `data_dir`, the demo uses its default, ./.crieur-demo.
    """
    stderr_path = tmp_path / "stderr.txt"
    options = ["--port", str(_free_port())]
    if data_dir is not None:
        options += ["--data-dir", str(data_dir)]
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]))
    with stderr_path.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "bot", "demo", *options, *args),
            cwd=tmp_path,
            env=environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
    run = DemoRun(process, data_dir or tmp_path / ".crieur-demo", stderr_path, [])
    try:
        yield run
    finally:
        # Whatever the test found, leave nothing behind: the demo's session, then Synapse's.
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            os.killpg(run.synapse_pid(), signal.SIGKILL)


def _processes_of(session: int, data_dir: Path) -> Iterator[str]:
    """Live processes in this session, or whose command line names the data directory."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            state, sid = fields[0], int(fields[3])
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if state != "Z" and (sid == session or str(data_dir) in command):
                yield f"{entry.name}: {command}"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie is dead already, only waiting for init to reap it


async def _gone(pid: int, timeout: float = 10) -> bool:  # noqa: ASYNC109
    """Wait until the process has ended; False if it still runs after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def _posts(client: AsyncClient, room_id: str) -> list[tuple[str, str]]:
    """(organisation, title) of each entry the bot posted in a room."""
    response = await client.room_messages(room_id, direction=MessageDirection.back, limit=100)
    assert isinstance(response, RoomMessagesResponse), response
    posts = []
    for event in response.chunk:
        content = event.source.get("content", {})
        if event.sender == BOT and content.get("msgtype") == "m.notice":
            lines = str(content.get("body", "")).split("\n")
            if len(lines) >= 2 and " · " in lines[0]:
                posts.append((lines[0].rsplit(" · ", 1)[0], lines[1]))
    return posts


async def _assert_room_set_up(client: AsyncClient, room_id: str, catalogue: Catalogue) -> None:
    """The bot created the room, named it after its region and gave the human power level 100."""
    response = await client.room_get_state(room_id)
    assert isinstance(response, RoomGetStateResponse), response
    state = {event["type"]: event for event in response.events if event["state_key"] == ""}
    assert state["m.room.create"]["sender"] == BOT
    assert state["m.room.create"]["content"]["room_version"] == "12"
    assert state["m.room.name"]["content"]["name"] in {r.name for r in catalogue.regions.values()}
    # Room version 12: the creator outranks everyone and is not listed in power levels.
    assert state["m.room.power_levels"]["content"]["users"] == {client.user_id: 100}


@pytest.mark.timeout(120)
@pytest.mark.synapse  # the demo runs its own
async def test_demo_posts_new_items_into_their_regions_rooms_then_stops_cleanly(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    region_of = {org.name: org.region for org in catalogue.organisations.values()}
    async with crieur_demo(tmp_path, "--for", "40s", data_dir=tmp_path / "demo") as demo:
        homeserver = (await demo.read_until(r"homeserver\s+(http://\S+)"))[1]
        user = (await demo.read_until(r"user\s+(@\S+)"))[1]
        password = (await demo.read_until(r"password\s+(\S+)"))[1]
        synapse_pid = demo.synapse_pid()
        client = AsyncClient(homeserver, user)
        try:
            assert isinstance(await client.login(password, device_name="test"), LoginResponse)
            rooms: dict[str, str] = {}
            for region in catalogue.regions_with_organisations():
                resolved = await client.room_resolve_alias(f"#{region.slug}:localhost")
                assert isinstance(resolved, RoomResolveAliasResponse), resolved
                rooms[resolved.room_id] = region.slug
            await _assert_room_set_up(client, next(iter(rooms)), catalogue)
            seen: set[tuple[str, str, str]] = set()  # (room's region, organisation, title)
            while demo.process.returncode is None:
                for room_id, slug in rooms.items():
                    posts = await _posts(client, room_id)
                    seen.update((slug, organisation, title) for organisation, title in posts)
                if len(seen) >= 3 and len({slug for slug, _, _ in seen}) >= 2:
                    break
                await asyncio.sleep(1)
        finally:
            await client.close()

        code = await demo.finish(timeout=60)

    assert code == 0, demo.output()
    assert len(seen) >= 3, demo.output()
    assert len({slug for slug, _, _ in seen}) >= 2, seen
    for slug, organisation, title in seen:
        assert region_of[organisation] == slug, f"{organisation}: {title} posted in {slug}"
    assert any(organisation in line for line in demo.lines for _, organisation, _ in seen)
    assert await _gone(synapse_pid), "Synapse still runs"
    assert not (demo.data_dir / "synapse" / "synapse.pid").exists()
    assert list(_processes_of(demo.process.pid, demo.data_dir)) == []


@pytest.mark.timeout(60)
@pytest.mark.synapse  # the demo runs its own
async def test_ctrl_c_stops_the_demo_and_its_homeserver(tmp_path: Path) -> None:
    async with crieur_demo(tmp_path) as demo:  # in ./.crieur-demo, a relative path
        await demo.read_until("The bot is running")
        synapse_pid = demo.synapse_pid()

        demo.process.send_signal(signal.SIGINT)
        code = await demo.finish(timeout=20)

    assert code == 0, demo.output()
    assert await _gone(synapse_pid), "Synapse still runs"
    assert list(_processes_of(demo.process.pid, demo.data_dir)) == []


@pytest.mark.timeout(60)
@pytest.mark.synapse  # the demo runs its own
async def test_a_rerun_keeps_the_password_and_the_rooms(tmp_path: Path) -> None:
    passwords = []
    for _ in range(2):
        async with crieur_demo(tmp_path) as demo:
            homeserver = (await demo.read_until(r"homeserver\s+(http://\S+)"))[1]
            passwords.append((await demo.read_until(r"password\s+(\S+)"))[1])
            client = AsyncClient(homeserver, "@you:localhost")
            try:
                assert isinstance(await client.login(passwords[-1]), LoginResponse)
                joined = await client.joined_rooms()
            finally:
                await client.close()
            demo.process.send_signal(signal.SIGINT)
            assert await demo.finish() == 0, demo.output()
        assert len(joined.rooms) == 11  # one per region that has organisations, never more

    assert passwords[0] == passwords[1]


@pytest.mark.timeout(60)
@pytest.mark.synapse  # the demo runs its own
async def test_homeserver_dies_with_a_killed_demo(tmp_path: Path) -> None:
    async with crieur_demo(tmp_path, data_dir=tmp_path / "demo") as demo:
        await demo.read_until(r"password\s+\S+")
        synapse_pid = demo.synapse_pid()

        demo.process.kill()  # SIGKILL: the demo cannot clean up after itself
        await demo.process.wait()

        assert await _gone(synapse_pid), "Synapse outlived the demo"
