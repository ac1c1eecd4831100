"""Scenario 3, hostile feeds: every hostile feed of the list at once, next to good feeds that keep
publishing, while a user keeps sending commands to a `crieur run` process.

Counted from the rooms' history: the good feeds' entries (each exactly once), the commands
answered, the posts of the feed whose ids change on every fetch (never more than
`polling.max_posts_per_poll` per poll, plus one summary line), and where the file an external
entity points at shows up (nowhere: rooms, database, log). Measured: the bot's resident memory
(start, end, peak) and how long commands take to be answered (from the homeserver's
timestamps). A second configuration with `polling.allow_private_networks: false` checks, with
`crieur fetch`, that loopback and link-local targets, direct or through a redirect, are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import secrets
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from nio import AsyncClient, Event

from reliability.hostile import (
    Deployment,
    GrowingFeed,
    Item,
    bot_posts,
    dated,
    event_size,
    organisation,
    room_for,
    rss_memory,
    services,
    wait_until,
)
from reliability.report import Row
from tests.e2e_support import content, reply_of
from tests.feed_server import FeedServer, rss
from tests.synapse_server import SynapseServer

MAX_POSTS = 5  # polling.max_posts_per_poll of the scenario
CHANGING_ITEMS = 12  # entries of the id-changing feed, all new on every fetch
RETRY_AFTER = 3  # seconds asked by the feed answering 429
COMMANDS = (
    "!status",
    "!help",
    "!regions",
    "!orgs",
    "!subscriptions",
    "!latest good-1",
    "!latest megabyte-title",
    "!latest bidi-and-zero-width 5",
    "!latest hostile 5",
)
COMMAND_GAP = 1.5  # seconds between an answer and the next command
MEMORY_BOUND = 250 * 1024 * 1024  # bytes of peak resident memory allowed to the bot
HEAVY_TITLE = 1024 * 1024  # characters


@dataclass(frozen=True, slots=True)
class Figures:
    """What one run of the scenario counted and measured."""

    hostile_feeds: int
    good_expected: int
    good_lost: int
    good_duplicated: int
    crashes: int
    commands_sent: int
    commands_unanswered: int
    commands_answered_twice: int
    answer_seconds: tuple[float, ...]
    memory_start: int
    memory_end: int
    memory_middle: int  # halfway through publishing: the end minus this is late growth
    memory_peak: int
    changing_polls: int
    changing_posts: int
    changing_most_in_one_poll: int
    changing_digests: int
    secret_leaks: int
    private_checked: int
    private_refused: int
    private_requests: int
    largest_event: int
    hostile_posts: int
    retry_after_early: int
    tracebacks: int
    bidi_overrides: int

    @property
    def cap_held(self) -> bool:
        """No poll of the id-changing feed posted more than the cap, nor more than one digest."""
        return (
            self.changing_most_in_one_poll <= MAX_POSTS
            and self.changing_digests <= self.changing_polls
            and self.changing_posts <= self.changing_polls * MAX_POSTS
        )

    def checks(self) -> dict[str, bool]:
        """Each limit the scenario checks, and whether it held."""
        return {
            "per-poll cap": self.cap_held,
            "no secret": self.secret_leaks == 0,
            "private refused": self.private_refused == self.private_checked
            and self.private_requests == 0,
            "bounded memory": 0 < self.memory_peak <= MEMORY_BOUND,
            "events under 64 KiB": self.largest_event < 64 * 1024,
            "Retry-After honoured": self.retry_after_early == 0,
            "no traceback": self.tracebacks == 0,
            "no bidi override outside summaries": self.bidi_overrides == 0,
        }


# -- the feeds ---------------------------------------------------------------------------------


def _good_item(slug: str, serial: int) -> Item:
    return {
        "title": f"Good {slug} #{serial}",
        "link": f"https://{slug}.example.org/news/{serial}",
        "guid": f"https://{slug}.example.org/news/{serial}",
        "pubDate": dated(60 - serial / 100),
        "description": f"<p>News {serial} of {slug}.</p>",
    }


def _encoded(charset_header: str | None, encoding: str, declared: str | None) -> Any:
    """An encoder writing the XML in `encoding`, declaring `declared`, sent with a charset."""

    def encode(items: Sequence[Item]) -> tuple[bytes, str]:
        text = rss(list(reversed(items))).decode("utf-8")
        prolog = '<?xml version="1.0" encoding="utf-8"?>'
        text = text.replace(
            prolog, f'<?xml version="1.0" encoding="{declared}"?>' if declared else ""
        )
        body = text.encode(encoding, errors="xmlcharrefreplace")
        content_type = "text/xml" + (f"; charset={charset_header}" if charset_header else "")
        return body, content_type

    return encode


def _invalid_utf8(items: Sequence[Item]) -> tuple[bytes, str]:
    body = rss(list(reversed(items)))
    return body.replace(b"INVALID", b"\xff\xfe\xc3(\xed\xa0\x80"), "application/rss+xml"


def _xxe(secret: Path) -> Any:
    def encode(items: Sequence[Item]) -> tuple[bytes, str]:
        body = rss(list(reversed(items))).decode("utf-8")
        body = body.replace(
            '<rss version="2.0">',
            f'<!DOCTYPE rss [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>\n<rss version="2.0">',
        )
        return body.replace("XXE", "&xxe;").encode("utf-8"), "application/rss+xml"

    return encode


_HOSTILE_TEXT = {
    "no-id-link-title": lambda n: {"description": f"<p>Nothing but a summary, number {n}.</p>"},
    "duplicated-ids": lambda n: {
        "title": f"Same id, version {n}",
        "guid": "always-the-same",
        "isPermaLink": False,
        "description": f"version {n}",
    },
    "extreme-dates": lambda n: {
        "title": f"Dated {'2999' if n % 2 else '1970'} ({n})",
        "guid": f"date-{n}",
        "isPermaLink": False,
        "pubDate": "Mon, 01 Jan 2999 00:00:00 GMT" if n % 2 else "Thu, 01 Jan 1970 00:00:00 GMT",
    },
    "megabyte-title": lambda n: {
        "title": f"Heavy {n} " + "word " * (HEAVY_TITLE // 5),
        "guid": f"heavy-{n}",
        "isPermaLink": False,
    },
    "bidi-and-zero-width": lambda n: {
        "title": f"Invoice {n} \u202egpj.exe\u2066\u200b\u200d\u2060\ufeff",
        "guid": f"bidi-{n}",
        "isPermaLink": False,
        "link": f"https://bidi.example.org/{n}/\u202emoc.elgoog\u200b",
        "description": "\u202eoverride in a summary\u200b",
    },
    "wrong-charset": lambda n: {"title": f"Éléphant à l'école {n}", "guid": f"wc-{n}"},
    "missing-charset": lambda n: {"title": f"Forêt d'été {n}", "guid": f"mc-{n}"},
    "invalid-utf8": lambda n: {"title": f"Broken INVALID bytes {n}", "guid": f"iu-{n}"},
    "external-entity": lambda n: {
        "title": f"Leak XXE {n}",
        "guid": f"xxe-{n}",
        "isPermaLink": False,
        "description": "The file says: XXE",
    },
}


def _billion_laughs() -> bytes:
    laughs = "".join(f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(2, 10))
    return (
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY lol1 "lol">{laughs}]>'
        '<rss version="2.0"><channel><title>t</title>'
        "<item><title>&lol9;</title><guid>1</guid><description>&lol9;</description></item>"
        "</channel></rss>"
    ).encode()


def _quadratic_blowup() -> bytes:
    # 4 MB, under polling.max_body: 126 million characters once expanded.
    return (
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "{"b" * 90}">]>'
        '<rss version="2.0"><channel><title>t</title>'
        f"<item><title>x</title><guid>1</guid><description>{'&a;' * 700_000}</description>"
        "</item></channel></rss>"
    ).encode()


class Hostile:
    """Every hostile feed of the list on one feed server; `url` of each by slug."""

    def __init__(self, server: FeedServer, secret: Path) -> None:
        self.server = server
        self.urls: dict[str, str] = {}
        self.growing: dict[str, GrowingFeed] = {}
        self.retry_times: list[float] = []
        self._serials = itertools.count(1)
        fixed = {
            "invalid-xml": (b'<?xml version="1.0"?><rss><channel><item><title>a & b <</ti', ""),
            "html-page": (b"<!DOCTYPE html><html><body><h1>Welcome</h1></body></html>", "html"),
            "empty-200": (b"", ""),
            "billion-laughs": (_billion_laughs(), ""),
            "quadratic-blowup": (_quadratic_blowup(), ""),
        }
        for slug, (body, kind) in fixed.items():
            content_type = "text/html" if kind == "html" else "application/rss+xml"
            server.set_feed(self._path(slug), body, content_type=content_type)
        whole = rss([{"title": f"Cut {n}", "guid": f"cut-{n}"} for n in range(20)])
        server.truncated(self._path("truncated-body"), whole, keep=len(whole) // 2)
        server.set_feed(self._path("truncated-xml"), whole[: len(whole) * 2 // 3])
        server.huge(self._path("body-50mb"), 50 * 1024 * 1024)
        server.trickle(self._path("one-byte-per-second"))
        server.endless(self._path("gzip-bomb"), gzip=True)
        server.redirect(self._path("redirect-loop"), "/redirect-loop-2.xml")
        server.redirect("/redirect-loop-2.xml", self._path("redirect-loop"))
        for code in (404, 410, 500, 503):
            server.status(self._path(f"status-{code}"), code)
        server.set_route(self._path("too-many-requests"), self._too_many_requests)
        server.changing(self._path("changing-ids"), CHANGING_ITEMS, prefix="Changing")
        self.urls["connect-hangs"] = server.hanging_url("/feed.xml")
        encoders = {
            "wrong-charset": _encoded("iso-8859-1", "utf-8", "utf-8"),
            "missing-charset": _encoded(None, "latin-1", None),
            "invalid-utf8": _invalid_utf8,
            "external-entity": _xxe(secret),
        }
        for slug in _HOSTILE_TEXT:
            # A window of 3 keeps the megabyte titles' feed under polling.max_body.
            feed = GrowingFeed(server, slug, encoders.get(slug, _plain_rss), window=3)
            self.growing[slug] = feed
            feed.publish(self._hostile_item(slug), self._hostile_item(slug))
            self.urls[slug] = feed.url

    def _path(self, slug: str) -> str:
        self.urls[slug] = self.server.url(f"/{slug}.xml")
        return f"/{slug}.xml"

    async def _too_many_requests(self, request: web.Request) -> web.StreamResponse:
        self.retry_times.append(time.monotonic())
        return web.Response(status=429, headers={"Retry-After": str(RETRY_AFTER)})

    def _hostile_item(self, slug: str) -> Item:
        serial = next(self._serials)
        item = {"pubDate": dated(30 - serial / 100), **_HOSTILE_TEXT[slug](serial)}
        return item

    def publish(self) -> None:
        """One more hostile item in each growing hostile feed."""
        for slug, feed in self.growing.items():
            feed.publish(self._hostile_item(slug))

    def retry_after_early(self) -> int:
        """Requests to the 429 feed sent before the Retry-After of the previous one ran out."""
        gaps = [b - a for a, b in itertools.pairwise(self.retry_times)]
        return sum(gap < RETRY_AFTER - 0.25 for gap in gaps)


def _plain_rss(items: Sequence[Item]) -> tuple[bytes, str]:
    return rss(list(reversed(items))), "application/rss+xml"


# -- commands ----------------------------------------------------------------------------------


@dataclass
class CommandLog:
    sent: list[str]
    unanswered: int = 0
    answered_twice: int = 0
    seconds: list[float] | None = None
    timed_out: list[str] = field(default_factory=list)


async def _keep_commanding(
    client: AsyncClient, rooms: Sequence[str], stop: asyncio.Event, log: CommandLog
) -> None:
    """Send commands one after the other, in each room in turn, until `stop`.

    Each answer's delay is measured with the homeserver's timestamps of command and answer.
    """
    seconds: list[float] = []
    log.seconds = seconds
    for text, room in zip(itertools.cycle(COMMANDS), itertools.cycle(rooms), strict=False):
        if stop.is_set():
            return
        event_id = await SynapseServer.send_text(client, room, text)
        log.sent.append(event_id)
        try:
            events = await SynapseServer.wait_for_messages(client, room, _answers(event_id), 20.0)
        except TimeoutError:
            log.unanswered += 1
            log.timed_out.append(text)
            continue
        sent_at = next(e.server_timestamp for e in events if e.event_id == event_id)
        reply = next(e for e in events if reply_of(e) == event_id)
        seconds.append((reply.server_timestamp - sent_at) / 1000)
        # A person's pace, under the bot's per-user limit of one command a second.
        await asyncio.sleep(COMMAND_GAP)


def _answers(event_id: str) -> Callable[[list[Event]], bool]:
    return lambda events: any(reply_of(event) == event_id for event in events)


def _count_replies(events: Sequence[Event], bot: str, sent: Sequence[str]) -> tuple[int, int]:
    """Commands without an answer, commands answered more than once."""
    answers = Counter(reply_of(e) for e in events if e.sender == bot)
    return sum(answers[i] == 0 for i in sent), sum(answers[i] > 1 for i in sent)


# -- private networks --------------------------------------------------------------------------


async def _private_targets_refused(
    deployment: Deployment, server: FeedServer
) -> tuple[int, int, int]:
    """Run `crieur fetch` with private networks refused; return checked, refused, requests."""
    server.set_feed("/private-target.xml", rss([{"title": "Private", "guid": "p"}]))
    server.redirect("/to-loopback.xml", server.url("/private-target.xml"))
    server.redirect("/to-metadata.xml", "http://169.254.169.254/latest/meta-data/")
    watched = ("/private-target.xml", "/to-loopback.xml", "/to-metadata.xml")
    before = sum(server.hits(path) for path in watched)
    port = server.port
    targets = {
        "metadata": "http://169.254.169.254/latest/meta-data/",
        "loopback": f"http://127.0.0.1:{port}/private-target.xml",
        "redirect-to-loopback": f"http://127.0.0.1:{port}/to-loopback.xml",
        "redirect-to-metadata": f"http://127.0.0.1:{port}/to-metadata.xml",
        "localhost-name": f"http://localhost:{port}/private-target.xml",
        "mapped-ipv6": f"http://[::ffff:127.0.0.1]:{port}/private-target.xml",
    }
    config = deployment.config(
        regions={"private": []},
        organisations={slug: organisation(slug, "private", url) for slug, url in targets.items()},
        polling={"allow_private_networks": False},
        name="private.yaml",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "fetch", "--dry-run", "-c", str(config),
        env={k: v for k, v in os.environ.items() if not k.startswith("CRIEUR_")},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    lines = output.decode("utf-8", "replace").splitlines()
    refused = sum(
        any(url in line and "not a public address" in line for line in lines)
        for url in targets.values()
    )
    requests = sum(server.hits(path) for path in watched) - before
    return len(targets), refused, requests


# -- the scenario ------------------------------------------------------------------------------


async def run(
    synapse: SynapseServer, server: FeedServer, directory: Path, *, seconds: float
) -> Figures:
    """Run the bot among hostile feeds for `seconds` of publishing; count what happened."""
    token, secret = _write_secret(directory)
    deployment = await Deployment.create(synapse, directory / "bot")
    user = await synapse.client("reader")
    try:
        good_room = await room_for(user, deployment.user_id, "good")
        hostile_room = await room_for(user, deployment.user_id, "hostile")
        good = [GrowingFeed(server, f"good-{n}") for n in (1, 2, 3)]
        serials = itertools.count(1)
        for feed in good:
            feed.publish(*(_good_item(feed.slug, next(serials)) for _ in range(2)))
        hostile = Hostile(server, secret)
        organisations = {feed.slug: organisation(feed.slug, "good", feed.url) for feed in good}
        for slug, url in hostile.urls.items():
            extra = {"interval": "3s"} if slug == "changing-ids" else {}
            organisations[slug] = organisation(slug, "hostile", url, **extra)
        config = deployment.config(
            regions={"good": [good_room], "hostile": [hostile_room]},
            organisations=organisations,
            # Every feed is on 127.0.0.1: with the default of 2 per host, the slow hostile
            # feeds would hold the good ones back, which a real deployment spreads over hosts.
            polling={"concurrency": 64, "per_host": 64, "max_posts_per_poll": MAX_POSTS},
        )
        process = await deployment.start(config)
        assert process.pid is not None
        good_paths = [feed.path for feed in good]
        await wait_until(_async(lambda: all(server.hits(p) >= 2 for p in good_paths)), 60)
        memory_start, _ = rss_memory(process.pid)

        stop = asyncio.Event()
        commands = CommandLog(sent=[])
        commander = asyncio.create_task(
            _keep_commanding(user, [good_room, hostile_room], stop, commands)
        )
        expected: list[str] = []
        began = time.monotonic()
        memory_middle = 0
        for tick in itertools.count():
            elapsed = time.monotonic() - began
            if elapsed >= seconds or process.exited:
                break
            if not memory_middle and elapsed >= seconds / 2:
                memory_middle = rss_memory(process.pid)[0]
            feed = good[tick % len(good)]
            item = _good_item(feed.slug, next(serials))
            feed.publish(item)
            expected.append(item["title"])
            if tick % 4 == 3:
                hostile.publish()
            await asyncio.sleep(0.5)
        stop.set()

        async def all_arrived() -> bool:
            events = await SynapseServer.timeline(user, good_room)
            bodies = "\n".join(str(content(e).get("body", "")) for e in events)
            return process.exited or all(title in bodies for title in expected)

        await wait_until(all_arrived, 60)
        await asyncio.sleep(3)  # a few more polls: whatever was due has arrived
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await commander
        commander.cancel()
        crashes = int(process.exited)
        memory_end, memory_peak = (0, 0) if process.exited else rss_memory(process.pid)
        private = await _private_targets_refused(deployment, server)
        await deployment.stop()
        changing_polls = server.hits("/changing-ids.xml") - 1  # the first one only seeds

        good_events = await SynapseServer.timeline(user, good_room)
        hostile_events = await SynapseServer.timeline(user, hostile_room)
        everything = [*good_events, *hostile_events]
        lost, duplicated = _count_titles(bot_posts(good_events, deployment.user_id), expected)
        unanswered, twice = _count_replies(everything, deployment.user_id, commands.sent)
        changing = _changing_posts(bot_posts(hostile_events, deployment.user_id))
        return Figures(
            hostile_feeds=len(hostile.urls),
            good_expected=len(expected),
            good_lost=lost,
            good_duplicated=duplicated,
            crashes=crashes,
            commands_sent=len(commands.sent),
            commands_unanswered=unanswered,
            commands_answered_twice=twice,
            answer_seconds=tuple(commands.seconds or ()),
            memory_start=memory_start,
            memory_end=memory_end,
            memory_middle=memory_middle,
            memory_peak=memory_peak,
            changing_polls=changing_polls,
            changing_posts=changing[0],
            changing_most_in_one_poll=changing[1],
            changing_digests=changing[2],
            secret_leaks=_leaks(token, everything, deployment, process.lines),
            private_checked=private[0],
            private_refused=private[1],
            private_requests=private[2],
            largest_event=max((event_size(e) for e in everything), default=0),
            hostile_posts=len(bot_posts(hostile_events, deployment.user_id)),
            retry_after_early=hostile.retry_after_early(),
            tracebacks=sum("Traceback" in line for line in process.lines),
            bidi_overrides=sum(map(_bidi_override_outside_summary, everything)),
        )
    finally:
        await deployment.kill()
        await user.close()
        if deployment.process is not None:
            _save_log(deployment.process.lines, directory / "crieur.log")


def _write_secret(directory: Path) -> tuple[str, Path]:
    """The local file the external entity points at, holding a token to look for."""
    directory.mkdir(parents=True, exist_ok=True)
    token = "secret-" + secrets.token_hex(16)
    secret = directory / "secret.txt"
    secret.write_text(f"{token}\n", encoding="utf-8")
    return token, secret


def _save_log(lines: Sequence[str], path: Path) -> None:
    path.write_text("\n".join(lines), encoding="utf-8")


def _async(check: Any) -> Any:
    async def wrapped() -> bool:
        return bool(check())

    return wrapped


def _count_titles(posts: Sequence[Event], expected: Sequence[str]) -> tuple[int, int]:
    """Expected titles never posted, and titles posted more than once."""
    wanted = set(expected)
    seen = Counter(
        line
        for event in posts
        for line in str(content(event).get("body", "")).splitlines()
        if line in wanted
    )
    return sum(seen[t] == 0 for t in wanted), sum(seen[t] > 1 for t in wanted)


_CHANGING = re.compile(r"^Changing (\d+)\.(\d+)$", re.MULTILINE)


def _changing_posts(posts: Sequence[Event]) -> tuple[int, int, int]:
    """Posts of the id-changing feed, the most from one fetch, and its summary lines."""
    per_fetch: Counter[str] = Counter()
    digests = 0
    for event in posts:
        body = str(content(event).get("body", ""))
        match = _CHANGING.search(body)
        if match:
            per_fetch[match.group(1)] += 1
        elif body.startswith("…") and "Changing Ids" in body:
            digests += 1
    return sum(per_fetch.values()), max(per_fetch.values(), default=0), digests


def _leaks(token: str, events: Sequence[Event], deployment: Deployment, log: list[str]) -> int:
    """Places where the secret file's content shows up: messages, database files, log lines."""
    found = sum(token in str(event.source) for event in events)
    found += sum(token in line for line in log)
    for path in deployment.directory.glob("crieur.sqlite3*"):
        found += token.encode() in path.read_bytes()
    return found


_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _bidi_override_outside_summary(event: Event) -> bool:
    """Whether a bidirectional control shows in a message, its entry's summary aside.

    A summary is the feed's own text in blocks of its own; the lines around it (organisation,
    title, link, date) and command answers are Crieur's, which no feed may reorder.
    """
    body = str(content(event).get("body", ""))
    formatted = str(content(event).get("formatted_body", ""))
    if reply_of(event) is None:
        body = body.partition("\n\n")[0]
        formatted = formatted.partition("<blockquote>")[0]
    return bool(_BIDI_CONTROLS & set(body + formatted))


def rows(figures: Figures) -> list[Row]:
    """The scenario's rows of the report."""
    f = figures
    answers = sorted(f.answer_seconds)
    slowest = f"{answers[-1]:.2f} s" if answers else "n/a"
    median = f"{statistics.median(answers):.2f} s" if answers else "n/a"
    checks = f.checks()
    failed = [name for name, held in checks.items() if not held]
    mib = 1024 * 1024
    return [
        Row(
            "3. hostile feeds: good feeds' entries",
            1,
            f.good_expected,
            f.good_lost,
            f.good_duplicated,
            f.crashes,
            f"{f.hostile_feeds} hostile feeds polled at once beside 3 good ones; "
            f"bot memory {f.memory_start / mib:.0f} MiB after start, "
            f"{f.memory_middle / mib:.0f} MiB halfway, "
            f"{f.memory_end / mib:.0f} MiB at the end, peak {f.memory_peak / mib:.0f} MiB",
        ),
        Row(
            "3. hostile feeds: commands answered",
            1,
            f.commands_sent,
            f.commands_unanswered,
            f.commands_answered_twice,
            f.crashes,
            f"answer time (homeserver timestamps) median {median}, slowest {slowest}",
        ),
        Row(
            "3. hostile feeds: limits (lost = failed checks)",
            1,
            len(checks),
            len(failed),
            0,
            f.crashes,
            f"id-changing feed: {f.changing_posts} posts and {f.changing_digests} summary "
            f"lines over {f.changing_polls} polls, at most {f.changing_most_in_one_poll} "
            f"from one fetch (cap {MAX_POSTS}); XXE file content found {f.secret_leaks} times "
            f"(rooms, database, log); {f.private_refused}/{f.private_checked} private or "
            f"link-local targets refused, {f.private_requests} requests reached them; "
            f"largest event {f.largest_event:,} bytes; 429 retried early "
            f"{f.retry_after_early} times; {f.bidi_overrides} messages with a bidi override "
            "outside summaries; "
            f"{f.hostile_posts} posts from hostile feeds"
            + (f"; FAILED: {', '.join(failed)}" if failed else ""),
        ),
    ]


async def scenario(full: bool, workdir: Path) -> list[Row]:
    """Scenario 3 with its own Synapse and feed server."""
    async with services(workdir) as (synapse, server):
        figures = await run(synapse, server, workdir / "run", seconds=120 if full else 20)
    return rows(figures)
