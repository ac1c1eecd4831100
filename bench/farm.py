"""A feed farm: one aiohttp server on 127.0.0.1 serving N French RSS feeds of 20 items each."""

# It runs in a process of its own (`python -m bench.farm --feeds N`), so that its CPU time never
# counts as the client's: the poll benchmark reads the client's process CPU time. Even-numbered
# feeds send ETag and Last-Modified and answer 304 to a conditional request until the bench
# publishes an item in them (`Farm.publish`); odd-numbered feeds send no validators and answer
# the same body again, so that the bot's body-hash check is what spares it a parse. An optional
# delay per answer (`Farm.set_delay`) stands in for the network. The server exits when its stdin
# closes, so it dies with the bench even if the bench is killed.

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from types import TracebackType
from typing import Any, Self
from xml.sax.saxutils import escape

import aiohttp
from aiohttp import web

from bot.model import Entry

HOST = "127.0.0.1"
ITEMS = 20  # items in a feed, as WordPress, Drupal and SPIP serve by default (10 to 20)
START_TIMEOUT = 60.0
STOP_GRACE = 5.0

# The farm's French: sentences of associative news, combined per item so that sizes vary as
# real ones do (a summary of one to five paragraphs, 200 bytes to 2 KB of HTML).
_SUBJECTS = (
    "Atelier de réparation de vélos",
    "Install party GNU/Linux",
    "Permanence numérique à la médiathèque",
    "Repair café du quartier",
    "Assemblée générale de l'association",
    "Soirée jeux coopératifs",
    "Chantier participatif au jardin partagé",
    "Conférence sur la vie privée en ligne",
    "Marché des producteurs locaux",
    "Projection-débat : « Les communs numériques »",
    "Formation aux premiers secours",
    "Bourse aux vêtements d'hiver",
)
_PLACES = (
    "à Lyon", "à Rennes", "à Villeurbanne", "à Montreuil", "à Grenoble", "à Nantes",
    "au centre social", "à la maison de quartier", "salle des fêtes", "en ligne",
)  # fmt: skip
_SENTENCES = (
    "Rencontre mensuelle ouverte à toutes et à tous, débutants comme confirmés.",
    "Venez avec votre ordinateur, nous fournissons le café et la bonne humeur.",
    "Les bénévoles de l'association vous accompagnent pas à pas dans l'installation de "
    "logiciels libres, la sauvegarde de vos données et la prise en main de votre matériel.",
    "L'entrée est libre et gratuite ; une participation au chapeau aide à couvrir les frais.",
    "Nous discuterons aussi des formats ouverts, de la sobriété numérique et de la façon dont "
    "chacun peut reprendre la main sur ses outils du quotidien.",
    "Pensez à vous inscrire : le nombre de places est limité à vingt-cinq personnes.",
    "Un goûter partagé clôturera l'après-midi, chacun apporte ce qu'il souhaite.",
    "Le compte rendu de la séance précédente est disponible sur notre site, ainsi que les "
    "supports de présentation sous licence Creative Commons.",
    "Accessible aux personnes à mobilité réduite ; interprétation en LSF sur demande.",
    "Merci aux adhérentes et adhérents qui ont rendu cette édition possible !",
)


def _pick(options: tuple[str, ...], *seeds: int) -> str:
    value = 0
    for seed in seeds:
        value = (value * 1_000_003 + seed) % 2_147_483_647
    return options[value % len(options)]


def item_summary(index: int, number: int) -> str:
    """The HTML summary of item `number` of feed `index`: 1 to 5 paragraphs of French."""
    paragraphs = []
    for paragraph in range(1 + (index * 7 + number * 3) % 5):
        sentences = 1 + (index + number + paragraph) % 3
        text = " ".join(_pick(_SENTENCES, index, number, paragraph, k) for k in range(sentences))
        paragraphs.append(f"<p>{escape(text)}</p>")
    return "".join(paragraphs)


def has_validators(index: int) -> bool:
    """Whether feed `index` sends ETag and Last-Modified (and so can answer 304)."""
    return index % 2 == 0


def feed_path(index: int) -> str:
    """The URL path of feed number `index`."""
    return f"/feeds/{index}.xml"


def feed_url(port: int, index: int) -> str:
    """The URL of feed number `index` on the farm listening on `port`."""
    return f"http://{HOST}:{port}{feed_path(index)}"


def item_tag(index: int, number: int) -> str:
    """The part of an item's title that names it alone: "n° 12-20"."""
    return f"n° {index}-{number}"


def item_title(index: int, number: int) -> str:
    """The title of item `number` of feed `index` (unique, so a room message names its item)."""
    subject = _pick(_SUBJECTS, index, number)
    place = _pick(_PLACES, number, index)
    return f"{subject} {place} ({item_tag(index, number)})"


def _home(index: int) -> str:
    return f"https://org{index}.example.org"


def item_key(index: int, number: int) -> str:
    """The guid of item `number` of feed `index`: the key Crieur's parser gives the entry."""
    return f"{_home(index)}/?p={number}"


def item_link(index: int, number: int) -> str:
    """The link of item `number` of feed `index`."""
    return f"{_home(index)}/news/{number}"


def _http_date(timestamp: float) -> str:
    return format_datetime(datetime.fromtimestamp(int(timestamp), UTC), usegmt=True)


@dataclass(slots=True)
class _Feed:
    """One feed: items `version` to `version + ITEMS - 1`, and when each newer one appeared."""

    version: int = 0
    published: dict[int, float] = field(default_factory=dict)  # item number → epoch
    served: dict[int, float] = field(default_factory=dict)  # version → first 200 with it
    hits: int = 0
    cache: tuple[int, bytes, str, str] | None = None  # version, body, ETag, Last-Modified


class FeedFarm:
    """The server side: renders feeds on demand, answers 304 when the client's copy is current."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._feeds: dict[int, _Feed] = {}
        self.delay = 0.0  # seconds before each feed answer: a stand-in for the network
        # Initial items are hours old: recent enough to be posted (polling.max_age is days).
        self._started = time.time()

    def _feed(self, index: int) -> _Feed:
        feed = self._feeds.get(index)
        if feed is None:
            feed = self._feeds[index] = _Feed()
        return feed

    def _date(self, feed: _Feed, number: int) -> float:
        return feed.published.get(number, self._started - (ITEMS - number) * 3600.0)

    def _render(self, index: int, feed: _Feed) -> tuple[int, bytes, str, str]:
        if feed.cache is not None and feed.cache[0] == feed.version:
            return feed.cache
        numbers = range(feed.version + ITEMS - 1, feed.version - 1, -1)  # newest first
        lines = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">',
            "<channel>",
            f"<title>Organisation {index}</title>",
            f"<link>{_home(index)}/</link>",
            "<description>Actualités de l'association</description>",
            "<language>fr-FR</language>",
            "<generator>https://wordpress.org/?v=6.4</generator>",
        ]
        for number in numbers:
            lines += [
                "<item>",
                f"<title>{escape(item_title(index, number))}</title>",
                f"<link>{item_link(index, number)}</link>",
                f"<dc:creator><![CDATA[Bureau de l'organisation {index}]]></dc:creator>",
                f"<pubDate>{_http_date(self._date(feed, number))}</pubDate>",
                "<category><![CDATA[Agenda]]></category>",
                f'<guid isPermaLink="false">{item_key(index, number)}</guid>',
                f"<description>{escape(item_summary(index, number))}</description>",
                "</item>",
            ]
        lines += ["</channel>", "</rss>", ""]
        body = "\n".join(lines).encode()
        etag = f'"{index}-{feed.version}-{hashlib.sha256(body).hexdigest()[:12]}"'
        last_modified = _http_date(self._date(feed, feed.version + ITEMS - 1))
        feed.cache = (feed.version, body, etag, last_modified)
        return feed.cache

    def publish(self, index: int) -> tuple[int, str]:
        """Add an item to a feed (its oldest one drops off); return the version and its title."""
        feed = self._feed(index)
        feed.version += 1
        number = feed.version + ITEMS - 1
        feed.published[number] = time.time()
        return feed.version, item_title(index, number)

    async def serve_feed(self, request: web.Request) -> web.StreamResponse:
        """GET one feed, conditionally when it has validators."""
        try:
            index = int(request.match_info["index"])
        except ValueError:
            raise web.HTTPNotFound() from None
        if not 0 <= index < self._size:
            raise web.HTTPNotFound()
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        feed = self._feed(index)
        feed.hits += 1
        version, body, etag, last_modified = self._render(index, feed)
        headers: dict[str, str] = {}
        if has_validators(index):
            headers = {"ETag": etag, "Last-Modified": last_modified}
            if request.headers.get("If-None-Match") == etag:
                return web.Response(status=304, headers=headers)
        feed.served.setdefault(version, time.time())
        return web.Response(body=body, headers=headers, content_type="application/rss+xml")

    async def control_publish(self, request: web.Request) -> web.StreamResponse:
        """POST {"feeds": [indexes]}: publish one item in each; answer their versions and titles."""
        indexes = (await request.json())["feeds"]
        published = {str(index): self.publish(int(index)) for index in indexes}
        return web.json_response(published)

    async def control_delay(self, request: web.Request) -> web.StreamResponse:
        """POST {"seconds": s}: wait that long before each feed answer from now on."""
        self.delay = float((await request.json())["seconds"])
        return web.json_response({"delay": self.delay})

    def snapshot(self, index: int) -> dict[str, Any]:
        """What a first fetch of the feed would record: validators, body hash, items."""
        feed = self._feed(index)
        _, body, etag, last_modified = self._render(index, feed)
        items = [
            (item_key(index, n), item_title(index, n), item_link(index, n), self._date(feed, n), n)
            for n in range(feed.version, feed.version + ITEMS)  # oldest first, as parsed
        ]
        validated = has_validators(index)
        return {
            "etag": etag if validated else None,
            "last_modified": last_modified if validated else None,
            "sha256": hashlib.sha256(body).hexdigest(),
            "size": len(body),
            "items": items,
        }

    async def control_snapshot(self, request: web.Request) -> web.StreamResponse:
        """GET the snapshots of feeds 0 to `count` - 1."""
        count = min(int(request.query["count"]), self._size)
        return web.json_response([self.snapshot(index) for index in range(count)])

    async def control_feed(self, request: web.Request) -> web.StreamResponse:
        """GET a feed's hit count and when each version was first served."""
        feed = self._feed(int(request.match_info["index"]))
        return web.json_response(
            {"hits": feed.hits, "version": feed.version, "served": feed.served}
        )

    def app(self) -> web.Application:
        """The aiohttp application: feeds, and the bench's control endpoints."""
        app = web.Application()
        app.router.add_get("/feeds/{index}.xml", self.serve_feed)
        app.router.add_post("/control/publish", self.control_publish)
        app.router.add_post("/control/delay", self.control_delay)
        app.router.add_get("/control/feeds/{index}", self.control_feed)
        app.router.add_get("/control/snapshot", self.control_snapshot)
        return app


async def _serve(size: int) -> None:
    farm = FeedFarm(size)
    # No access log: at thousands of requests a second it would cost more than the answers.
    runner = web.AppRunner(farm.app(), access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    port = int(sock.getsockname()[1])
    await web.SockSite(runner, sock, backlog=1024).start()
    print(json.dumps({"port": port}), flush=True)
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()

    def watch_stdin() -> None:
        sys.stdin.buffer.read()  # returns when the bench closes the pipe, or dies
        loop.call_soon_threadsafe(closed.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    try:
        await closed.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    """Run the farm until stdin closes."""
    parser = argparse.ArgumentParser(prog="python -m bench.farm")
    parser.add_argument("--feeds", type=int, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.feeds))


def _control_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60), trust_env=False)


@dataclass(frozen=True, slots=True)
class FeedSnapshot:
    """A feed as its first fetch would record it."""

    etag: str | None
    last_modified: str | None
    sha256: str
    size: int  # bytes of the body
    entries: tuple[Entry, ...]  # oldest first


class Farm:
    """The bench's side: starts the farm process, publishes items, reads what it served."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.port: int | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def pid(self) -> int | None:
        """The farm's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def url(self, index: int) -> str:
        """The URL of feed number `index`."""
        assert self.port is not None
        return feed_url(self.port, index)

    @classmethod
    def attach(cls, port: int, size: int) -> Farm:
        """A client of a farm that another process started: `stop()` only closes the session."""
        farm = cls(size)
        farm.port = port
        farm._session = _control_session()
        return farm

    async def start(self) -> None:
        """Start the farm process and learn its port."""
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.farm",
            "--feeds",
            str(self.size),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self._process.stdout is not None
        try:
            async with asyncio.timeout(START_TIMEOUT):
                line = await self._process.stdout.readline()
            self.port = int(json.loads(line)["port"])
        except BaseException:
            await self.stop()
            raise
        self._session = _control_session()

    async def stop(self) -> None:
        """Close the farm's stdin (it exits), then make sure it has; reap it."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        process = self._process
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE)
        except TimeoutError:
            process.kill()
            await process.wait()
        self._process = None

    def kill(self) -> None:
        """Kill the farm at once if it still runs (for atexit: no event loop needed)."""
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)

    async def publish(self, indexes: list[int]) -> dict[int, tuple[int, str]]:
        """Publish one item in each of these feeds; return each one's new version and title."""
        assert self._session is not None
        url = f"http://{HOST}:{self.port}/control/publish"
        async with self._session.post(url, json={"feeds": indexes}) as response:
            response.raise_for_status()
            data = await response.json()
        return {int(index): (int(v[0]), str(v[1])) for index, v in data.items()}

    async def set_delay(self, seconds: float) -> None:
        """Make the farm wait `seconds` before each feed answer (0: answer at once)."""
        assert self._session is not None
        url = f"http://{HOST}:{self.port}/control/delay"
        async with self._session.post(url, json={"seconds": seconds}) as response:
            response.raise_for_status()

    async def body(self, index: int) -> bytes:
        """Fetch feed `index` as a client without validators would (its current body)."""
        assert self._session is not None
        async with self._session.get(self.url(index)) as response:
            response.raise_for_status()
            return await response.read()

    async def snapshots(self, count: int) -> list[FeedSnapshot]:
        """Return what a first fetch of feeds 0 to `count` - 1 would record."""
        assert self._session is not None
        url = f"http://{HOST}:{self.port}/control/snapshot"
        async with self._session.get(url, params={"count": str(count)}) as response:
            response.raise_for_status()
            data = await response.json()
        return [
            FeedSnapshot(
                etag=item["etag"],
                last_modified=item["last_modified"],
                sha256=item["sha256"],
                size=int(item["size"]),
                entries=tuple(
                    Entry(
                        key=key,
                        title=title,
                        link=link,
                        published=datetime.fromtimestamp(published, UTC),
                        summary_html=item_summary(index, number),
                    )
                    for key, title, link, published, number in item["items"]
                ),
            )
            for index, item in enumerate(data)
        ]

    async def feed_state(self, index: int) -> tuple[int, dict[int, float]]:
        """Return a feed's hit count and, per version, when it was first served (epoch)."""
        assert self._session is not None
        url = f"http://{HOST}:{self.port}/control/feeds/{index}"
        async with self._session.get(url) as response:
            response.raise_for_status()
            data = await response.json()
        served = {int(version): float(at) for version, at in data["served"].items()}
        return int(data["hits"]), served


if __name__ == "__main__":
    main()
