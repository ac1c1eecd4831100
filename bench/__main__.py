"""`python -m bench [--quick]`: run every benchmark, print the table, write docs/BENCHMARKS.md."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import logging
import os
import signal
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from bench.catalogue import CONCURRENCY, PER_HOST, REGIONS
from bench.delivery import DeliveryResult, bench_delivery
from bench.farm import ITEMS, Farm
from bench.latency import LatencyResult, bench_latency
from bench.measure import progress
from bench.memory import MemoryResult, bench_memory
from bench.poll import CHANGED, PollResult, bench_poll
from bench.report import Figure, Machine, render, table
from bench.synapse import Synapse

REPORT = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"
MB = 1_000_000

# Targets, from the design document's "Performance" section.
POLL_RATIO_MAX = 1.3
CPU_PER_FEED_MAX = 0.5e-3  # seconds
DELIVERY_RATIO_MIN = 0.8
PEAK_RSS_MAX = 150 * MB
LATENCY_EXCESS_MAX = 2.0  # seconds on top of the poll interval


@dataclass(frozen=True, slots=True)
class Plan:
    """How much each benchmark does."""

    poll_feeds: tuple[int, ...]  # the last one is also the memory benchmark's
    rooms: int
    messages: int
    latency_samples: int
    interval: float  # seconds, for the latency benchmark
    repeats: int


FULL = Plan(
    poll_feeds=(1000, 5000), rooms=500, messages=200, latency_samples=3, interval=3.0, repeats=3
)
QUICK = Plan(
    poll_feeds=(100, 500), rooms=50, messages=20, latency_samples=1, interval=2.0, repeats=1
)


@dataclass(frozen=True, slots=True)
class Results:
    """Everything one run measured."""

    polls: list[PollResult]
    memory: MemoryResult
    delivery: DeliveryResult
    latency: LatencyResult
    synapse_startup: float


async def measure(plan: Plan, workdir: Path) -> Results:
    """Run the benchmarks in turn; the farm and Synapse are stopped whatever happens."""
    farm = Farm(max(plan.poll_feeds) + 1)  # the last feed is the latency benchmark's
    atexit.register(farm.kill)
    async with farm:
        polls = [
            await bench_poll(farm, feeds, plan.repeats, workdir)
            for feeds in sorted(plan.poll_feeds)
        ]
        largest = max(plan.poll_feeds)
        memory = await bench_memory(
            farm, workdir / f"poll-{largest}.sqlite3", largest, plan.rooms, plan.repeats
        )
        # Synapse only now: its start-up and idle work must not land in the poll figures.
        progress("starting Synapse")
        synapse = Synapse()
        atexit.register(synapse.kill)
        async with synapse:
            progress(f"Synapse answered after {synapse.startup_seconds:.1f} s")
            delivery = await bench_delivery(synapse, workdir, plan.messages, plan.repeats)
            latency = await bench_latency(
                synapse, farm, farm.size - 1, workdir, plan.latency_samples, plan.interval
            )
    return Results(polls, memory, delivery, latency, synapse.startup_seconds)


def figures(results: Results) -> list[Figure]:
    """One row per figure, with its verdict."""
    rows: list[Figure] = []
    for poll in results.polls:
        ratio = poll.crieur_wall / poll.bare_wall
        rows.append(
            Figure(
                f"poll cycle, {poll.feeds:,} feeds, {CHANGED:.0%} changed",
                f"{poll.crieur_wall:.2f} s",
                f"{poll.bare_wall:.2f} s",
                ratio,
                f"≤ {POLL_RATIO_MAX:.2f}×",
                ratio <= POLL_RATIO_MAX,
            )
        )
        cpu, bare_cpu = poll.crieur_cpu_per_feed, poll.bare_cpu_per_feed
        rows.append(
            Figure(
                f"CPU per feed, {poll.feeds:,}-feed cycle ({CHANGED:.0%} parsed)",
                f"{cpu * 1000:.3f} ms",
                f"{bare_cpu * 1000:.3f} ms",
                cpu / bare_cpu,
                "—",
                None,
            )
        )
        cpu, bare_cpu = poll.crieur_cpu_per_unchanged_feed, poll.bare_cpu_per_unchanged_feed
        rows.append(
            Figure(
                f"CPU per unchanged feed, {poll.feeds:,}-feed cycle, nothing changed",
                f"{cpu * 1000:.3f} ms",
                f"{bare_cpu * 1000:.3f} ms",
                cpu / bare_cpu,
                f"≤ {CPU_PER_FEED_MAX * 1000:g} ms",
                cpu <= CPU_PER_FEED_MAX,
            )
        )
    delivery = results.delivery
    ratio = delivery.crieur_rate / delivery.bare_rate
    rows.append(
        Figure(
            "delivery into Synapse",
            f"{delivery.crieur_rate:.1f} msg/s",
            f"{delivery.bare_rate:.1f} msg/s",
            ratio,
            f"≥ {DELIVERY_RATIO_MIN:.2f}×",
            ratio >= DELIVERY_RATIO_MIN,
        )
    )
    memory = results.memory
    rows.append(
        Figure(
            f"peak RSS, {memory.feeds:,} feeds, {memory.rooms} rooms",
            f"{memory.peak / MB:.1f} MB",
            f"{memory.baseline / MB:.1f} MB",
            memory.peak / memory.baseline,
            f"≤ {PEAK_RSS_MAX / MB:.0f} MB",
            memory.peak <= PEAK_RSS_MAX,
        )
    )
    latency = results.latency
    rows.append(
        Figure(
            "latency, item fetched → seen in the room",
            f"{latency.excess:.2f} s",
            f"{latency.bare_latency:.2f} s",
            latency.excess / latency.bare_latency,
            f"≤ {LATENCY_EXCESS_MAX:g} s",
            latency.excess <= LATENCY_EXCESS_MAX,
        )
    )
    bound = latency.interval + LATENCY_EXCESS_MAX
    rows.append(
        Figure(
            f"latency, item published → seen (worst of {len(latency.samples)})",
            f"{latency.worst_total:.2f} s",
            f"{latency.interval:g} s",
            latency.worst_total / latency.interval,
            f"≤ {bound:g} s",
            latency.worst_total <= bound,
        )
    )
    return rows


def method(results: Results, plan: Plan) -> list[str]:
    """How each figure was measured, with this run's particulars."""
    polls = results.polls
    seeds = ", ".join(f"{poll.seed_seconds:.1f} s for {poll.feeds:,}" for poll in polls)
    delivery, memory, latency = results.delivery, results.memory, results.latency
    return [
        f"- **Feed farm.** One aiohttp server, in a process of its own (its CPU time is not the "
        f"client's), on 127.0.0.1, serving RSS feeds of {ITEMS} items with ETag and "
        "Last-Modified; it answers 304 to a request carrying the current ETag. Before each "
        f"measured cycle {CHANGED:.0%} of the feeds get a new item (a different {CHANGED:.0%} "
        f"each time); the other {1 - CHANGED:.0%} answer 304.",
        "- **Poll cycle.** Crieur: the real `Scheduler`, `Pipeline`, `Fetcher` and `Store` "
        "(SQLite file in WAL mode), wired as `crieur run` wires them, with every feed due at "
        "once (as after a restart); the cycle ends when every feed has been polled and "
        f"recorded. `polling.concurrency` is {CONCURRENCY} and `polling.per_host` is raised "
        f"from its default of 2 to {PER_HOST}: every feed of the farm is on one host, which "
        "the default would poll two at a time. `polling.allow_private_networks` is on, since "
        "the farm is on 127.0.0.1, so the fetcher uses aiohttp's plain resolver and sockets "
        "(the public-address checks are not measured). Baseline: a bare aiohttp loop "
        f"(`limit` = `limit_per_host` = {CONCURRENCY}, {CONCURRENCY} workers) sending the same "
        "conditional GETs to the same URLs and reading the changed bodies, storing nothing. "
        "Cycles alternate which side goes first. The store is seeded by recording each "
        "feed's first fetch with `Store.record_poll`, as the pipeline would, without "
        f"fetching and parsing everything once ({seeds}); each measured cycle checks that "
        "every changed feed yields exactly one new entry.",
        "- **CPU per feed.** The process's CPU time (`time.process_time`: every thread, so "
        "SQLite's and the parser's threads count) over a cycle, divided by the number of "
        f"feeds. The mixed cycle includes the {CHANGED:.0%} changed feeds, which are parsed "
        "and recorded (shown for context); the target applies to the cycles in which nothing "
        "changed, every feed answering 304, which measure what an unchanged feed costs.",
        f"- **Delivery.** {delivery.messages} messages per round into one room of a local "
        "Synapse (rate limits far above the rates reached): Crieur's `Dispatcher.drain` "
        "through `MatrixBot.send_notice` (with the metrics wrapper `crieur run` adds) versus a "
        "bare nio `AsyncClient.room_send` loop posting the same rendered contents into "
        "another room, one message at a time as the dispatcher does. The outbox rows are "
        "written by `Store.record_poll` before the timer starts; rendering, the room-state "
        f"check and marking each row sent are timed. {WARM_UP_NOTE}",
        f"- **Peak memory.** A fresh interpreter imports everything `crieur run` imports, "
        f"opens the {memory.feeds:,}-feed store of the poll benchmark, makes {memory.rooms} "
        f"rooms follow the {REGIONS} regions (so each new entry is routed to "
        f"{memory.rooms // REGIONS} rooms; {memory.outbox:,} messages were queued by the "
        "last run), and runs one poll cycle with "
        f"{CHANGED:.0%} of the feeds changed; the figure is its RSS high-water mark "
        "(`getrusage`), the baseline its RSS right after the imports. The Matrix client is "
        "not part of this process: nothing is synced or sent.",
        f"- **Latency.** `bot.app.run_bot` runs against the local Synapse with a "
        f"{latency.interval:g} s poll interval and one feed. Items are published at a random "
        "moment of the interval; a member's nio client long-polls the room. *Fetched → seen* "
        "runs from the farm first serving the item to the bot until the member sees the "
        "message: what the bot adds to the wait for its next poll. Its baseline is Synapse's "
        "own latency, a bare nio message from send to seen by the same member. *Published → "
        "seen* must stay under the interval plus 2 s.",
        f"- **Repeats.** Each measurement ran {plan.repeats}× (latency: "
        f"{len(latency.samples)} items); the table shows medians, ratios are of medians. "
        f"Synapse took {results.synapse_startup:.1f} s to start and is not running during the "
        "poll and memory benchmarks.",
    ]


WARM_UP_NOTE = "Each side first sends a few untimed messages (log-in, state reads, connections)."


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # As Ctrl-C does: asyncio.run then cancels the benchmarks, which stop what they started.
    raise KeyboardInterrupt


def main() -> None:
    """Parse arguments, run, print the table, write the report."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat: a smoke run")
    parser.add_argument("--repeats", type=int, help="runs of each measurement (default 3)")
    parser.add_argument(
        "--output",
        type=Path,
        help="where to write the report (default: docs/BENCHMARKS.md; --quick writes none)",
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    if args.repeats:
        plan = replace(plan, repeats=args.repeats)
    output: Path | None = args.output or (None if args.quick else REPORT)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _interrupt)
    started, began, load = datetime.now(UTC), time.monotonic(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="crieur-bench-") as workdir:
        results = asyncio.run(measure(plan, Path(workdir)))
    machine = Machine.describe(started, time.monotonic() - began, load)
    rows = figures(results)
    print(table(rows))
    if output is not None:
        command = "python -m bench --quick" if args.quick else "make bench"
        text = render(rows, machine, command=command, method=method(results, plan))
        output.write_text(text, encoding="utf-8")
        progress(f"wrote {output}")
    if any(row.passed is False for row in rows):
        progress("some figures miss their target (see the table)")


if __name__ == "__main__":
    main()
