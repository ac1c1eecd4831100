"""Fetch feeds over HTTP: conditional GET, limits, redirects, Retry-After → a `FetchResult`.

The fetcher owns every HTTP rule, so the rest of the pipeline only ever sees a `FetchResult`
or a `FetchError` that says, in words a moderator can act on, what went wrong.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Self, TypeAlias

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.connector import AddrInfoType
from aiohttp.resolver import DefaultResolver
from yarl import URL

from . import USER_AGENT
from .config import PollingConfig
from .errors import FetchError
from .model import FetchResult

__all__ = [
    "MAX_REDIRECTS",
    "MAX_RETRY_AFTER",
    "Fetcher",
    "RequestBudget",
    "address_kind",
    "is_public_address",
    "parse_retry_after",
]

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 10
MAX_RETRY_AFTER = 24 * 3600.0  # seconds; a server asking for more is not taken at its word
CONNECT_TIMEOUT = 10.0  # seconds, at most; a feed host that cannot accept a socket by then is down

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.1"
)
_CHUNK = 64 * 1024
_PARSED_URLS = 100_000
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PERMANENT_REDIRECTS = frozenset({301, 308})
_RETRY_AFTER_STATUSES = frozenset({429, 503})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address


def address_kind(address: str | IPAddress) -> str | None:
    """Return why an IP address is not publicly routable ("loopback", "private", …), or None."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv6 address that embeds an IPv4 one reaches that IPv4 host: judge the host.
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return address_kind(embedded)
        if ip in _NAT64_LOCAL:
            return "private"
    if ip.is_loopback:
        return "loopback"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:
        return "reserved"
    if isinstance(ip, ipaddress.IPv6Address) and ip in _UNIQUE_LOCAL:
        return "unique-local"
    if ip.is_private:
        return "private"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "site-local"
    if not ip.is_global:  # e.g. 100.64.0.0/10, carrier-grade NAT
        return "non-public"
    return None


def is_public_address(address: str | IPAddress) -> bool:
    """Return whether a feed may be fetched from this IP address without allow_private_networks."""
    return address_kind(address) is None


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Turn a Retry-After header (delta-seconds or HTTP-date) into seconds, capped at 24 h."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # HTTP-dates are GMT; "-0000" parses naive
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class _RefusedAddress(OSError):
    """A connection to a non-public address was about to be made and was stopped."""

    def __init__(self, host: str, addresses: list[str]) -> None:
        self.host = host
        self.addresses = addresses
        described = ", ".join(f"{a} ({address_kind(a) or 'public'})" for a in addresses)
        target = described if [host] == addresses else f"{host} resolves to {described}"
        super().__init__(
            f"refused to connect: {target} is not a public address "
            "(set polling.allow_private_networks to allow it)"
        )


class _PublicResolver(AbstractResolver):
    """Resolve names with aiohttp's default resolver, keeping only public addresses."""

    def __init__(self, inner: AbstractResolver) -> None:
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        public = [r for r in results if is_public_address(_strip_scope(r["host"]))]
        if not public:
            raise _RefusedAddress(host, [r["host"] for r in results])
        return public

    async def close(self) -> None:
        await self._inner.close()


def _strip_scope(address: str) -> str:
    """Drop an IPv6 zone ("fe80::1%eth0") that ipaddress cannot always parse."""
    return address.partition("%")[0]


def _public_socket(addr_info: AddrInfoType) -> socket.socket:
    """Create the socket for one connection attempt, refusing a non-public peer."""
    family, type_, proto, _, sockaddr = addr_info
    # The last line of defence: this is the address the socket is about to connect to,
    # whatever the resolver, its cache or a literal IP in the URL said before.
    peer = _strip_scope(str(sockaddr[0]))
    if not is_public_address(peer):
        raise _RefusedAddress(peer, [peer])
    return socket.socket(family=family, type=type_, proto=proto)


@dataclass(frozen=True, slots=True)
class _Redirect:
    status: int
    location: URL


@dataclass(slots=True)
class RequestBudget:
    """HTTP requests that several fetches share, redirects included; `used` grows with each."""

    limit: int
    used: int = 0


def _format_size(size: int) -> str:
    """Write a byte count the way the config does (5 MiB, 512 KiB)."""
    for unit, factor in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


class Fetcher:
    """Fetch feeds with one shared HTTP session; use it as an async context manager.

    Every failure raises `FetchError`. Limits: `polling.timeout` for a whole fetch, redirects
    included, counted from the moment its first request gets a slot; a connect timeout of at
    most 10 s; `polling.max_body` bytes after decompression; at most 10 redirects;
    `polling.concurrency` requests at once, and `polling.per_host` at once per host name (a
    slot is held from the request until its body is read, and taken again for each redirect).
    """

    def __init__(self, polling: PollingConfig, *, user_agent: str = USER_AGENT) -> None:
        if polling.concurrency < 1 or polling.per_host < 1:
            raise ValueError("polling.concurrency and polling.per_host must be at least 1")
        self._polling = polling
        self._headers = {
            "User-Agent": user_agent,
            "Accept": ACCEPT,
            # Named explicitly so that only codecs with aiohttp's decompression limits are used.
            "Accept-Encoding": "gzip, deflate",
        }
        self._session: aiohttp.ClientSession | None = None
        self._resolver: AbstractResolver | None = None
        self._global = asyncio.Semaphore(polling.concurrency)
        # One per host name ever fetched: bounded by the catalogue and its redirect targets.
        self._per_host: dict[str, asyncio.Semaphore] = {}
        self._parsed: dict[str, URL] = {}  # feed URL → its checked, parsed form

    async def __aenter__(self) -> Self:
        polling = self._polling
        if polling.allow_private_networks:
            connector = aiohttp.TCPConnector(
                limit=polling.concurrency, limit_per_host=polling.per_host
            )
        else:
            self._resolver = _PublicResolver(DefaultResolver())
            connector = aiohttp.TCPConnector(
                limit=polling.concurrency,
                limit_per_host=polling.per_host,
                resolver=self._resolver,
                socket_factory=_public_socket,
            )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            # The whole fetch's deadline is enforced around each request (`_get`), counted
            # from the moment it gets a slot; a second, per-request timer of aiohttp's own
            # would only cost a timer handle per poll.
            timeout=aiohttp.ClientTimeout(
                total=None, connect=min(CONNECT_TIMEOUT, polling.timeout)
            ),
            # Feeds need no cookies, and a jar shared by thousands of feeds would only grow.
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session and its connections."""
        session, self._session = self._session, None
        resolver, self._resolver = self._resolver, None
        if session is not None:
            await session.close()
        if resolver is not None:  # the connector only closes resolvers it created itself
            await resolver.close()

    async def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        budget: RequestBudget | None = None,
    ) -> FetchResult:
        """GET a feed, conditionally when validators are given; 304 gives a result without body.

        With a `budget`, every request (each redirect is one) spends from it, and a fetch that
        finds it empty raises FetchError.
        """
        session = self._session
        if session is None:
            raise RuntimeError("Fetcher.fetch() called outside 'async with Fetcher(...)'")
        headers: dict[str, str] = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        current = self._feed_url(url)
        chain = [current]
        permanent = True
        deadline: float | None = None
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            if budget is not None:
                if budget.used >= budget.limit:
                    raise FetchError(url, f"gave up after {budget.limit} requests")
                budget.used += 1
            # Per host first, so that feeds queueing behind a busy host hold no global slot.
            async with self._host_slot(current), self._global:
                if deadline is None:  # time spent queueing for a slot is not the feed's fault
                    deadline = loop.time() + self._polling.timeout
                outcome = await self._get(session, url, current, headers, deadline)
            if isinstance(outcome, FetchResult):
                break
            permanent = permanent and outcome.status in _PERMANENT_REDIRECTS
            target = _check_url(url, str(outcome.location), via=current)
            if target in chain:
                hops = " → ".join(str(u) for u in [*chain[chain.index(target) :], target])
                raise FetchError(url, f"redirect loop: {hops}", status=outcome.status)
            if len(chain) > MAX_REDIRECTS:
                raise FetchError(
                    url, f"too many redirects (more than {MAX_REDIRECTS})", status=outcome.status
                )
            chain.append(target)
            current = target
        moved = permanent and len(chain) > 1
        if logger.isEnabledFor(logging.DEBUG):  # most polls: spare formatting what is dropped
            logger.debug(
                "GET %s → %d (%s) in %.0f ms%s",
                url,
                outcome.status,
                "not modified" if outcome.body is None else f"{len(outcome.body)} bytes",
                (loop.time() - started) * 1000,
                f", moved permanently to {current}" if moved else "",
            )
        if len(chain) > 1:
            outcome = replace(outcome, final_url=str(current))
        if moved:
            logger.info("feed %s moved permanently to %s", url, current)
            outcome = replace(outcome, permanent_url=str(current))
        if outcome.body is None and (
            (etag and not outcome.etag) or (last_modified and not outcome.last_modified)
        ):
            # A 304 may leave the validators out: the ones sent still describe the feed.
            outcome = replace(
                outcome,
                etag=outcome.etag or etag,
                last_modified=outcome.last_modified or last_modified,
            )
        return outcome

    def _host_slot(self, url: URL) -> asyncio.Semaphore:
        """The semaphore that bounds requests to this URL's host."""
        host = url.host or ""
        per_host = self._per_host.get(host)
        if per_host is None:
            per_host = self._per_host[host] = asyncio.Semaphore(self._polling.per_host)
        return per_host

    def _feed_url(self, url: str) -> URL:
        """Parse a feed's own URL once: it is fetched again every interval."""
        parsed = self._parsed.get(url)
        if parsed is None:
            parsed = _check_url(url, url)
            if len(self._parsed) >= _PARSED_URLS:
                self._parsed.clear()  # a catalogue this large is not expected; stay bounded
            self._parsed[url] = parsed
        return parsed

    async def _get(
        self,
        session: aiohttp.ClientSession,
        feed_url: str,
        url: URL,
        headers: dict[str, str],
        deadline: float,
    ) -> FetchResult | _Redirect:
        """Make one request of a redirect chain; map every failure to a FetchError."""
        where = "" if str(url) == feed_url else f" (at {url})"
        try:
            async with (
                asyncio.timeout_at(deadline),
                session.get(url, headers=headers, allow_redirects=False) as response,
            ):
                return await self._handle(feed_url, url, response, where)
        except aiohttp.ConnectionTimeoutError:
            connect = min(CONNECT_TIMEOUT, self._polling.timeout)
            raise FetchError(feed_url, f"could not connect within {connect:g} s{where}") from None
        except TimeoutError:
            raise FetchError(
                feed_url, f"timed out after {self._polling.timeout:g} s{where}"
            ) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise FetchError(
                feed_url, f"TLS certificate error: {exc.certificate_error}{where}"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            os_error = exc.os_error
            if isinstance(os_error, _RefusedAddress):
                message = str(os_error)
            elif isinstance(exc, aiohttp.ClientConnectorDNSError):
                message = f"cannot resolve host {exc.host}: {os_error.strerror or os_error}"
            else:
                message = (
                    f"cannot connect to {exc.host}:{exc.port}: {os_error.strerror or os_error}"
                )
            raise FetchError(feed_url, f"{message}{where}") from None
        except aiohttp.ServerDisconnectedError:
            raise FetchError(feed_url, f"the server closed the connection{where}") from None
        except aiohttp.ClientPayloadError as exc:
            raise FetchError(feed_url, f"broken response body: {exc}{where}") from None
        except aiohttp.ClientResponseError as exc:
            raise FetchError(feed_url, f"invalid HTTP response: {exc.message}{where}") from None
        except aiohttp.ClientError as exc:
            raise FetchError(feed_url, f"HTTP error: {exc or type(exc).__name__}{where}") from None

    async def _handle(
        self, feed_url: str, url: URL, response: aiohttp.ClientResponse, where: str
    ) -> FetchResult | _Redirect:
        """Turn one response into a result, a redirect to follow, or a FetchError."""
        status = response.status
        if status in _REDIRECTS:
            location = response.headers.get("Location")
            if not location:
                raise FetchError(
                    feed_url, f"HTTP {status} redirect without a Location{where}", status=status
                )
            try:
                target = url.join(URL(location))
            except (TypeError, ValueError):
                raise FetchError(
                    feed_url,
                    f"HTTP {status} redirect to invalid URL {location!r}{where}",
                    status=status,
                ) from None
            return _Redirect(status, target)
        if status >= 400:
            reason = f" {response.reason}" if response.reason else ""
            retry_after = None
            if status in _RETRY_AFTER_STATUSES:
                retry_after = parse_retry_after(
                    response.headers.get("Retry-After"), now=datetime.now(UTC)
                )
            hint = f", retry after {retry_after:.0f} s" if retry_after is not None else ""
            raise FetchError(
                feed_url,
                f"HTTP {status}{reason}{hint}{where}",
                status=status,
                retry_after=retry_after,
            )
        if status == 304:
            body = None
        elif 200 <= status < 300:
            body = await self._read_body(feed_url, response, where)
        else:
            raise FetchError(feed_url, f"unexpected HTTP status {status}{where}", status=status)
        return FetchResult(
            url=feed_url,
            status=status,
            body=body,
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
            content_type=response.headers.get("Content-Type"),
        )

    async def _read_body(
        self, feed_url: str, response: aiohttp.ClientResponse, where: str
    ) -> bytes:
        """Read the decompressed body in chunks, giving up as soon as it passes the cap."""
        cap = self._polling.max_body

        def too_large() -> FetchError:
            message = f"body larger than {_format_size(cap)} (polling.max_body){where}"
            return FetchError(feed_url, message, status=response.status)

        declared = response.content_length
        # Content-Length counts compressed bytes, so it only tells for an uncompressed body.
        if declared is not None and declared > cap and "Content-Encoding" not in response.headers:
            raise too_large()
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > cap:
                raise too_large()
            chunks.append(chunk)
        return b"".join(chunks)


def _check_url(feed_url: str, url: str, *, via: URL | None = None) -> URL:
    """Parse a feed or redirect URL; refuse anything but absolute http(s) URLs."""
    what = f"redirect from {via} to {url!r}" if via is not None else "URL"
    try:
        parsed = URL(url)
    except (TypeError, ValueError) as exc:
        raise FetchError(feed_url, f"invalid {what}: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        scheme = f"'{parsed.scheme}'" if parsed.scheme else "none"
        raise FetchError(
            feed_url, f"unsupported {what}: scheme {scheme} (only http and https are fetched)"
        )
    if not parsed.host:
        raise FetchError(feed_url, f"invalid {what}: no host")
    return parsed.with_fragment(None)
