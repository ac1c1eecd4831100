"""A real local aiohttp feed server whose behaviour each test sets.

Loaded as a pytest plugin by the root ``conftest.py``; tests ask for the ``feed_server`` fixture::

    async def test_new_item_is_posted(feed_server):
        feed_server.set_feed("/april.xml", rss([{"title": "Hello", "guid": "1"}]), etag="v1")
        url = feed_server.url("/april.xml")          # http://127.0.0.1:PORT/april.xml
        ...
        assert feed_server.hits("/april.xml") == 1

Behaviours (each replaces whatever the path did before; unknown paths answer 404):

- ``set_feed(path, body, etag=, last_modified=, content_type=, gzip=)``: a feed that honours
  If-None-Match / If-Modified-Since with 304 Not Modified;
- ``status(path, code, headers=, body=)``: a fixed status, e.g. 429 with Retry-After, or 500;
- ``redirect(path, to, code=302)``: a redirect to another path or an absolute URL;
- ``slow(path, seconds)``: waits before answering with what the path did before (or 200 empty);
- ``endless(path, gzip=)``: a body that never ends;
- ``trickle(path, bytes_per_second=)``: a body that never ends, sent a byte at a time;
- ``truncated(path, body, keep=)``: a Content-Length that promises the body, and a connection
  closed after ``keep`` bytes of it;
- ``huge(path, size)``: a well-begun feed padded to ``size`` bytes, streamed without a length;
- ``changing(path, count)``: ``count`` items whose ids and titles change on every request;
- ``hanging_url(path)``: the URL of a socket that listens but never accepts nor answers;
- ``set_route(path, handler)``: anything else, with a plain aiohttp handler.

Observation: ``hits(path)``, ``requests(path)`` (the headers of each request received),
``received`` (the path and query of every request, in order),
``in_flight`` and ``max_in_flight`` (requests being answered at once, over the whole server).
``rss(items)`` builds a small RSS 2.0 document.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip as gzip_module
import itertools
import socket
import zlib
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from xml.sax.saxutils import escape

import pytest_asyncio
from aiohttp import web
from multidict import CIMultiDictProxy

__all__ = ["FeedServer", "Handler", "feed_server", "rss"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HOST = "127.0.0.1"


def rss(
    items: Sequence[Mapping[str, Any]],
    *,
    title: str = "Test feed",
    link: str = "https://example.org/",
    description: str = "A feed served to the tests",
    language: str | None = None,
) -> bytes:
    """Build a small RSS 2.0 feed; each item may have title, link, guid, pubDate, description.

    Values are escaped as text, so a description may hold HTML as it would in a real feed.
    ``pubDate`` may be a timezone-aware ``datetime`` or an already formatted string; a ``guid``
    that is not a URL may be marked with ``"isPermaLink": False``. Keys left out are left out
    of the XML, which lets a test build entries without id, link or date.
    """
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<rss version="2.0">',
        "<channel>",
        f"<title>{escape(title)}</title>",
        f"<link>{escape(link)}</link>",
        f"<description>{escape(description)}</description>",
    ]
    if language:
        lines.append(f"<language>{escape(language)}</language>")
    for item in items:
        lines.append("<item>")
        for key in ("title", "link", "guid", "pubDate", "description"):
            if key not in item or item[key] is None:
                continue
            value = item[key]
            if isinstance(value, datetime):
                value = format_datetime(value, usegmt=value.utcoffset() is not None)
            attributes = ""
            if key == "guid" and item.get("isPermaLink") is False:
                attributes = ' isPermaLink="false"'
            lines.append(f"<{key}{attributes}>{escape(str(value))}</{key}>")
        lines.append("</item>")
    lines += ["</channel>", "</rss>", ""]
    return "\n".join(lines).encode("utf-8")


def _quoted_etag(etag: str) -> str:
    """Quote a bare ETag ("v1" → '"v1"'); leave quoted and weak ones alone."""
    return etag if etag.startswith(('"', "W/")) else f'"{etag}"'


def _etag_matches(header: str, etag: str) -> bool:
    """Say whether an If-None-Match header names this ETag (weak comparison, RFC 9110)."""
    if header.strip() == "*":
        return True

    def opaque(tag: str) -> str:
        return tag.strip().removeprefix("W/")

    return any(opaque(candidate) == opaque(etag) for candidate in header.split(","))


def _not_modified_since(header: str, last_modified: str) -> bool:
    """Say whether If-Modified-Since is at or after Last-Modified."""
    try:
        return parsedate_to_datetime(header) >= parsedate_to_datetime(last_modified)
    except (TypeError, ValueError):
        return header.strip() == last_modified


class FeedServer:
    """A local HTTP server on 127.0.0.1 whose answer for each path the test chooses."""

    def __init__(self) -> None:
        self.port = 0
        self._routes: dict[str, Handler] = {}
        self._requests: defaultdict[str, list[CIMultiDictProxy[str]]] = defaultdict(list)
        self.received: list[str] = []  # path and query of every request, in order
        self.in_flight = 0
        self.max_in_flight = 0
        self._runner: web.AppRunner | None = None
        self._hanging: list[socket.socket] = []

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on 127.0.0.1, on a free port chosen by the system."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock, shutdown_timeout=0.1).start()

    async def stop(self) -> None:
        """Stop listening and drop open connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for sock in self._hanging:
            sock.close()
        self._hanging.clear()

    # --- addresses and observation --------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The server's root, without trailing slash: ``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self.port}"

    def url(self, path: str = "/") -> str:
        """The absolute URL of a path on this server."""
        if not path.startswith("/"):
            path = "/" + path
        return self.base_url + path

    def hits(self, path: str) -> int:
        """How many requests this path received."""
        return len(self._requests.get(path, ()))

    def requests(self, path: str) -> list[CIMultiDictProxy[str]]:
        """The headers of each request this path received, oldest first."""
        return list(self._requests.get(path, ()))

    def reset(self) -> None:
        """Forget the requests received (hits, headers, max_in_flight); keep the behaviours."""
        self._requests.clear()
        self.received.clear()
        self.max_in_flight = self.in_flight

    # --- behaviours ------------------------------------------------------------------------

    def set_route(self, path: str, handler: Handler) -> None:
        """Answer a path with any aiohttp handler (``async def handler(request) -> Response``)."""
        self._routes[path] = handler

    def remove(self, path: str) -> None:
        """Make a path answer 404 Not Found again."""
        self._routes.pop(path, None)

    def set_feed(
        self,
        path: str,
        body: bytes,
        *,
        etag: str | None = None,
        last_modified: str | datetime | None = None,
        content_type: str = "application/rss+xml",
        gzip: bool = False,
    ) -> None:
        """Serve a feed; with validators, a matching conditional GET gets 304 Not Modified.

        A bare ``etag`` is quoted ("v1" is sent as ``"v1"``). ``last_modified`` may be an
        HTTP-date string or an aware ``datetime``. ``gzip=True`` always sends the body gzipped,
        whatever the request's Accept-Encoding. Call again to publish a new version.
        """
        headers = {"Content-Type": content_type}
        if etag is not None:
            headers["ETag"] = _quoted_etag(etag)
        if isinstance(last_modified, datetime):
            last_modified = format_datetime(last_modified, usegmt=True)
        if last_modified is not None:
            headers["Last-Modified"] = last_modified
        payload = body
        if gzip:
            payload = gzip_module.compress(body)
            headers["Content-Encoding"] = "gzip"
        validators = {k: v for k, v in headers.items() if k in ("ETag", "Last-Modified")}

        async def handler(request: web.Request) -> web.StreamResponse:
            if_none_match = request.headers.get("If-None-Match")
            if_modified_since = request.headers.get("If-Modified-Since")
            if if_none_match is not None and "ETag" in headers:
                not_modified = _etag_matches(if_none_match, headers["ETag"])
            elif if_modified_since is not None and last_modified is not None:
                not_modified = _not_modified_since(if_modified_since, last_modified)
            else:
                not_modified = False
            if not_modified:
                return web.Response(status=304, headers=validators)
            return web.Response(body=payload, headers=headers)

        self.set_route(path, handler)

    def status(
        self,
        path: str,
        code: int,
        headers: Mapping[str, str] | None = None,
        *,
        body: bytes = b"",
    ) -> None:
        """Answer a path with a fixed status, e.g. ``status(p, 429, {"Retry-After": "120"})``."""
        fixed = dict(headers or {})

        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(status=code, headers=fixed, body=body or None)

        self.set_route(path, handler)

    def redirect(self, path: str, to: str, code: int = 302) -> None:
        """Redirect a path to another path of this server (sent as is) or to an absolute URL."""

        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(status=code, headers={"Location": to})

        self.set_route(path, handler)

    def slow(self, path: str, seconds: float) -> None:
        """Wait before answering the path as it was set up before (200 with no body if not)."""
        previous = self._routes.get(path)

        async def handler(request: web.Request) -> web.StreamResponse:
            await asyncio.sleep(seconds)
            if previous is None:
                return web.Response(body=b"", content_type="application/rss+xml")
            return await previous(request)

        self.set_route(path, handler)

    def endless(self, path: str, *, gzip: bool = False, chunk_size: int = 64 * 1024) -> None:
        """Stream a body that never ends (with ``gzip``, a tiny stream that inflates forever)."""

        async def handler(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
            compressor = None
            if gzip:
                response.headers["Content-Encoding"] = "gzip"
                compressor = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
            await response.prepare(request)
            chunk = b"<rss><channel>" + b" " * chunk_size
            # The client hanging up ends the stream; nothing else should.
            with contextlib.suppress(ConnectionError):
                while True:
                    data = chunk if compressor is None else compressor.compress(chunk)
                    if compressor is not None:
                        data += compressor.flush(zlib.Z_SYNC_FLUSH)
                    await response.write(data)
                    # Small gzip writes never fill the socket, so never wait on it: yield, or
                    # the client sharing this event loop would never get to read.
                    await asyncio.sleep(0)
            return response

        self.set_route(path, handler)

    def trickle(self, path: str, *, bytes_per_second: float = 1.0) -> None:
        """Stream a feed that never ends, one byte at a time, `bytes_per_second` of them."""

        async def handler(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
            await response.prepare(request)
            opening = b'<?xml version="1.0"?><rss version="2.0"><channel><title>'
            with contextlib.suppress(ConnectionError):
                for index in itertools.count():
                    await response.write(opening[index : index + 1] or b"a")
                    await asyncio.sleep(1 / bytes_per_second)
            return response

        self.set_route(path, handler)

    def truncated(self, path: str, body: bytes, *, keep: int) -> None:
        """Promise `body` in Content-Length, send its first `keep` bytes, then hang up."""

        async def handler(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
            response.content_length = len(body)
            await response.prepare(request)
            await response.write(body[:keep])
            if request.transport is not None:
                request.transport.close()
            return response

        self.set_route(path, handler)

    def huge(self, path: str, size: int, *, chunk_size: int = 256 * 1024) -> None:
        """Stream `size` bytes: the start of a feed, then white space (no Content-Length)."""

        async def handler(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
            await response.prepare(request)
            head = rss([{"title": "Énorme", "guid": "huge-1"}]).split(b"</channel>")[0]
            sent = len(head)
            padding = b" " * chunk_size
            with contextlib.suppress(ConnectionError):
                await response.write(head)
                while sent < size:
                    piece = padding[: size - sent]
                    await response.write(piece)
                    sent += len(piece)
                await response.write_eof()
            return response

        self.set_route(path, handler)

    def changing(self, path: str, count: int, *, prefix: str = "Changeant") -> None:
        """Serve `count` items whose ids change on every request, titled "PREFIX F.I" (fetch F).

        A feed that regenerates its ids (a session id in the guid, a timestamp…): every poll
        finds `count` entries it has never seen.
        """
        fetches = itertools.count(1)

        async def handler(request: web.Request) -> web.StreamResponse:
            fetch = next(fetches)
            now = datetime.now(UTC).replace(microsecond=0)
            items = [
                {
                    "title": f"{prefix} {fetch}.{index}",
                    "guid": f"{path}?fetch={fetch}&item={index}",
                    "isPermaLink": False,
                    "pubDate": now - timedelta(seconds=count - index),
                }
                for index in range(count)
            ]
            return web.Response(body=rss(items[::-1]), content_type="application/rss+xml")

        self.set_route(path, handler)

    def hanging_url(self, path: str = "/") -> str:
        """The URL of a socket on 127.0.0.1 that listens but never accepts nor answers.

        Its accept queue is filled at once, so a client's connection attempt gets no answer at
        all (the kernel drops its SYN), as with a firewalled host; closed by ``stop()``.
        """
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.bind((HOST, 0))
        server.listen(0)
        self._hanging.append(server)
        port = server.getsockname()[1]
        for _ in range(2):  # the queue holds backlog + 1 connections on Linux
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((HOST, port))
            self._hanging.append(filler)
        return f"http://{HOST}:{port}{path}"

    # --- dispatch --------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self._requests[path].append(request.headers)
        self.received.append(request.path_qs)
        handler = self._routes.get(path)
        if handler is None:
            return web.Response(status=404, text=f"no behaviour set for {path}")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1


@pytest_asyncio.fixture
async def feed_server() -> AsyncIterator[FeedServer]:
    """A started `FeedServer`, stopped after the test."""
    server = FeedServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
