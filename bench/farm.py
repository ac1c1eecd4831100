"""A feed farm: one aiohttp server on 127.0.0.1 serving N RSS feeds with ETag and Last-Modified."""

# It runs in a process of its own (`python -m bench.farm --feeds N`), so that its CPU time never
# counts as the client's: the poll benchmark reads the client's process CPU time. Feeds answer
# 304 to a conditional request until the bench publishes an item in them (`Farm.publish`), which
# is how "95 % unchanged, 5 % changed" is made. The server exits when its stdin closes, so it
# dies with the bench even if the bench is killed.

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
ITEMS = 10  # items in a feed, as most blogs and CMSs serve
START_TIMEOUT = 30.0
STOP_GRACE = 5.0
SUMMARY = (
    "<p>Rencontre mensuelle ouverte à toutes et à tous : installation de logiciels libres, "
    "aide à la prise en main, discussions autour des formats ouverts et de la vie privée. "
    "Venez avec votre ordinateur, nous fournissons le café.</p>"
)


def feed_path(index: int) -> str:
    """The URL path of feed number `index`."""
    return f"/feeds/{index}.xml"


def feed_url(port: int, index: int) -> str:
    """The URL of feed number `index` on the farm listening on `port`."""
    return f"http://{HOST}:{port}{feed_path(index)}"


def item_title(index: int, number: int) -> str:
    """The title of item `number` of feed `index` (unique, so a room message names its item)."""
    return f"Feed {index}, item {number}: monthly install party"


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
            '<rss version="2.0">',
            "<channel>",
            f"<title>Organisation {index}</title>",
            f"<link>{_home(index)}/</link>",
            "<description>Actualités</description>",
            "<language>fr-FR</language>",
        ]
        for number in numbers:
            lines += [
                "<item>",
                f"<title>{escape(item_title(index, number))}</title>",
                f"<link>{item_link(index, number)}</link>",
                f'<guid isPermaLink="false">{item_key(index, number)}</guid>',
                f"<pubDate>{_http_date(self._date(feed, number))}</pubDate>",
                f"<description>{escape(SUMMARY)}</description>",
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
        """GET one feed, conditionally."""
        try:
            index = int(request.match_info["index"])
        except ValueError:
            raise web.HTTPNotFound() from None
        if not 0 <= index < self._size:
            raise web.HTTPNotFound()
        feed = self._feed(index)
        feed.hits += 1
        version, body, etag, last_modified = self._render(index, feed)
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

    def snapshot(self, index: int) -> dict[str, Any]:
        """What a first fetch of the feed would record: validators, body hash, items."""
        feed = self._feed(index)
        _, body, etag, last_modified = self._render(index, feed)
        items = [
            (item_key(index, n), item_title(index, n), item_link(index, n), self._date(feed, n))
            for n in range(feed.version, feed.version + ITEMS)  # oldest first, as parsed
        ]
        return {
            "etag": etag,
            "last_modified": last_modified,
            "sha256": hashlib.sha256(body).hexdigest(),
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


@dataclass(frozen=True, slots=True)
class FeedSnapshot:
    """A feed as its first fetch would record it."""

    etag: str
    last_modified: str
    sha256: str
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
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30), trust_env=False
        )

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
                entries=tuple(
                    Entry(
                        key=key,
                        title=title,
                        link=link,
                        published=datetime.fromtimestamp(published, UTC),
                        summary_html=SUMMARY,
                    )
                    for key, title, link, published in item["items"]
                ),
            )
            for item in data
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
