"""Scenario 7, slow host: 60 feeds on one host that answers each request in 19 s, beside five
feeds on another host name that publish an entry each every 5 s (`polling.interval` 5 s);
`crieur run`, with the default `polling.concurrency` (16) and `polling.per_host` (2), must post
the fast feeds' entries on time however long the slow host takes. An entry is on time when
its post reaches its room within the interval plus 10 s of its publication (from the moment
the feed server serves it to the homeserver's timestamp of the post); late or missing counts
as lost. Requests the slow host had in progress beyond `polling.per_host`, counted from the
server's side, count as crashes. The two host names are 127.0.0.1 and localhost, one server."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from aiohttp import web

from tests.e2e_support import content, posts_from, write_config
from tests.feed_server import FeedServer, rss
from tests.synapse_server import SynapseServer

from .delivery import Deployment, services
from .report import Row

INTERVAL = 5.0  # seconds: polling.interval of every feed
LATE_AFTER = INTERVAL + 10.0  # seconds from publication to post, past which an entry is late
PER_HOST = 2  # polling.per_host, its default


@dataclass(frozen=True, slots=True)
class Counts:
    """How much the scenario does."""

    slow_feeds: int
    slow_answer: float  # seconds the slow host takes to answer each request
    rounds: int  # times every fast organisation publishes an entry


FULL = Counts(slow_feeds=60, slow_answer=19.0, rounds=6)
SHORT = Counts(slow_feeds=60, slow_answer=8.0, rounds=2)


class SlowHost:
    """Feeds that answer after a delay, counting the requests they have in progress."""

    def __init__(self, server: FeedServer, counts: Counts) -> None:
        self.counts = counts
        self.in_progress = self.peak = self.answered = 0
        self.paths = [f"/slow/{number}.xml" for number in range(counts.slow_feeds)]
        self._body = rss([{"title": "Still here", "guid": "https://slow.example.org/1"}])
        for path in self.paths:
            server.set_route(path, self._handle)
        self.urls = [server.url(path) for path in self.paths]

    async def _handle(self, request: web.Request) -> web.Response:
        self.in_progress += 1
        self.peak = max(self.peak, self.in_progress)
        try:
            await asyncio.sleep(self.counts.slow_answer)
            self.answered += 1
            return web.Response(body=self._body, content_type="application/rss+xml")
        finally:
            self.in_progress -= 1


async def scenario(full: bool, workdir: Path) -> list[Row]:
    """The runner's entry: its own Synapse and feed server."""
    async with services(workdir) as (synapse, feed_server):
        return [await run(synapse, feed_server, workdir, FULL if full else SHORT)]


async def run(
    synapse: SynapseServer,
    feed_server: FeedServer,
    workdir: Path,
    counts: Counts,
    *,
    judge_delays: bool = True,
) -> Row:
    """Run the scenario once; return its row.

    The report judges delays in seconds. Without `judge_delays` (the test suite, on a shared
    machine), an entry counts as late only if the slow host had worked through its whole queue
    before the fast entries were all posted: an order of events, not a time.
    """
    name = (
        f"7. slow host: {counts.slow_feeds} feeds answering in {counts.slow_answer:g} s "
        "beside 5 fast ones"
    )
    deployment = await Deployment.create(synapse, feed_server, workdir / "slow-host")
    slow = SlowHost(feed_server, counts)
    _configure(deployment, slow)
    published: dict[str, float] = {}  # title → when it was published (epoch seconds)
    try:
        await deployment.start()
        await deployment.wait_seeded()
        for _ in range(counts.rounds):
            for slug in deployment.rooms:
                (title,) = deployment.publish(slug, 1)
                published[title] = time.time()
            await asyncio.sleep(INTERVAL)
        await deployment.wait_delivered()
        answered_by_then = slow.answered  # slow answers before the fast entries were all posted
        delays = await _delays(deployment, published)
        tally = await deployment.tally()
    except (TimeoutError, AssertionError) as error:
        return await deployment.aborted(name, counts.rounds, error)
    finally:
        await deployment.close()
    if judge_delays:
        late = [title for title in published if delays.get(title, LATE_AFTER + 1) > LATE_AFTER]
    else:
        late = list(published) if answered_by_then >= counts.slow_feeds else []
    too_many = max(slow.peak - PER_HOST, 0)  # requests past the host's limit count as crashes
    values = sorted(delays.values())
    note = (
        f"{len(published)} entries published on the fast host; publication to post: median "
        f"{statistics.median(values):.1f} s, slowest {values[-1]:.1f} s (on time: within "
        f"{LATE_AFTER:g} s); the slow host had answered {answered_by_then} of its "
        f"{counts.slow_feeds} feeds by then and {slow.answered} requests in all, at most "
        f"{slow.peak} at once (`polling.per_host` {PER_HOST}); {tally.describe()}"
    )
    return Row(
        name,
        counts.rounds,
        tally.expected,
        max(len(late), tally.lost),
        tally.duplicated,
        deployment.crashes() + too_many,
        note,
    )


def _configure(deployment: Deployment, slow: SlowHost) -> None:
    """Put the fast feeds on another host name and add the slow host's organisations."""
    path = deployment.directory / "config.yaml"
    data = yaml.safe_load(path.read_text("utf-8"))
    for organisation in data["organisations"].values():
        # The same local server under another name: the per-host limits tell them apart.
        organisation["feeds"] = [
            url.replace("127.0.0.1", "localhost", 1) for url in organisation["feeds"]
        ]
    data["regions"]["slow"] = {"name": "Slow"}
    for number, url in enumerate(slow.urls):
        data["organisations"][f"slow{number}"] = {
            "name": f"Slow {number}",
            "region": "slow",
            "feeds": [url],
        }
    data["polling"] = {
        "interval": f"{INTERVAL:g}s",
        "timeout": "30s",
        "max_posts_per_poll": 100,
        "allow_private_networks": True,
    }
    write_config(data, path)


async def _delays(deployment: Deployment, published: dict[str, float]) -> dict[str, float]:
    """Seconds from each title's publication to its post, read from the rooms' history."""
    delays: dict[str, float] = {}
    for room in deployment.rooms.values():
        events = await SynapseServer.timeline(deployment.reader, room)
        for event in posts_from(events, deployment.user_id):
            for line in str(content(event).get("body", "")).splitlines():
                if line in published and line not in delays:
                    delays[line] = event.server_timestamp / 1000 - published[line]
    return delays
