"""Scenario 2, homeserver outage: Synapse stopped in the middle of a delivery and started again;
the bot must reconnect by itself, lose nothing, post nothing twice, and say so on /health."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from tests.e2e_support import eventually
from tests.feed_server import FeedServer
from tests.synapse_server import SynapseServer

from .delivery import WAIT, Deployment, posts_logged, services
from .report import Row

METHOD = (
    "**outage** (scenario 2): `crieur run` (with `http.listen`) relays five organisations, "
    "each into a room of its own. The pending entries are published; at the first post, "
    "Synapse is stopped (SIGTERM), left down, then started again on the same port. `/health` "
    "is read every half second throughout (`http.unhealthy_after: 10s`; 2 s in the short "
    "version), and the bot is left alone: it must reconnect by itself (its sync retries back "
    "off from 1 s to at most 10 s; the first sync that gets through resumes delivery). A "
    "reader then reads each room's history: every entry once, in order."
)


@dataclass(frozen=True, slots=True)
class Counts:
    """How much the scenario does."""

    entries: int
    outage: float  # seconds Synapse stays down
    unhealthy_after: str  # http.unhealthy_after of the bot


FULL = Counts(entries=200, outage=30.0, unhealthy_after="10s")
SHORT = Counts(entries=40, outage=5.0, unhealthy_after="2s")


async def scenario(full: bool, workdir: Path) -> list[Row]:
    """The runner's entry: its own Synapse and feed server."""
    async with services(workdir) as (synapse, feed_server):
        row, _, _ = await run(synapse, feed_server, workdir, FULL if full else SHORT)
        return [row]


@dataclass(frozen=True, slots=True)
class Health:
    """What /health answered, and when (seconds from the stop of Synapse)."""

    before: int | None
    during: list[tuple[float, int | None]]
    after: list[tuple[float, int | None]]  # seconds from the restart of Synapse

    @property
    def unhealthy_from(self) -> float | None:
        return next((at for at, status in self.during if status == 503), None)

    @property
    def healthy_again(self) -> float | None:
        return next((at for at, status in self.after if status == 200), None)

    def describe(self) -> str:
        unhealthy = self.unhealthy_from
        healthy = self.healthy_again
        return (
            f"/health {self.before} before; "
            + (f"503 from {unhealthy:.1f} s into the outage" if unhealthy is not None else
               "never 503 during the outage")
            + "; "
            + (f"200 again {healthy:.1f} s after the restart" if healthy is not None else
               "not 200 again")
        )  # fmt: skip


async def run(
    synapse: SynapseServer, feed_server: FeedServer, workdir: Path, counts: Counts
) -> tuple[Row, Health, bool]:
    """Stop Synapse mid-delivery, start it again, count what the rooms received; also return
    what /health said and whether the bot logged that its sync works again."""
    name = f"2. outage: Synapse down {counts.outage:.0f} s mid-delivery"
    deployment = await Deployment.create(
        synapse, feed_server, workdir / "outage", unhealthy_after=counts.unhealthy_after
    )
    try:
        process = await deployment.start()
        await deployment.wait_seeded()
        before, _ = await deployment.health()
        slugs = list(deployment.rooms)
        for index, slug in enumerate(slugs):
            deployment.publish(
                slug, counts.entries // len(slugs) + (index < counts.entries % len(slugs))
            )
        await deployment.wait_log(process, lambda lines: posts_logged(lines) >= 1, "a post")
        stopped = time.monotonic()
        try:
            await synapse.astop()
            owed = counts.entries - await deployment.sent()
            during: list[tuple[float, int | None]] = []
            while (elapsed := time.monotonic() - stopped) < counts.outage:
                during.append((elapsed, (await deployment.health())[0]))
                await deployment.guard(asyncio.sleep(0.5))
        finally:
            await synapse.astart()
        restarted = time.monotonic()
        after: list[tuple[float, int | None]] = []

        async def healthy() -> bool:
            status, _ = await deployment.health()
            after.append((time.monotonic() - restarted, status))
            return status == 200

        await deployment.guard(eventually(healthy, WAIT, what="/health 200", interval=0.5))
        await deployment.wait_delivered()
        delivered_in = time.monotonic() - restarted
        await deployment.quiet()
        reconnected = "sync works again" in process.log
        code = await deployment.terminate(process)
        tally = await deployment.tally()
        crashes = deployment.crashes() + (code != 0)
    except (AssertionError, TimeoutError) as error:
        row = await deployment.aborted(name, 1, error)
        return row, Health(None, [], []), False
    finally:
        await deployment.close()
    health = Health(before, during, after)
    row = Row(
        name,
        1,
        tally.expected,
        tally.lost,
        tally.duplicated,
        crashes,
        f"{owed} of {tally.expected} entries still to deliver at the stop; "
        f"{'reconnected by itself' if reconnected else 'did not say it reconnected'}; "
        f"{health.describe()}; everything delivered {delivered_in:.1f} s after the restart; "
        f"{tally.describe()}",
    )
    return row, health, reconnected
