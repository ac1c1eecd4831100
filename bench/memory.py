"""Peak memory: a process of its own runs two poll cycles of N feeds followed by R rooms."""

# The RSS high-water mark covers a process's whole life, so each measurement runs in
# a fresh interpreter: `python -m bench.memory ...` prints a JSON line. Its baseline is the same
# process's RSS right after importing everything `crieur run` imports. The process is not
# `crieur run` itself: that would need the 500 rooms on a homeserver and the bot's Matrix client
# syncing them; what it runs is everything else `crieur run` runs for a poll (the real
# Scheduler, Pipeline, Fetcher, Store, the catalogue), and it queues the messages for 500 rooms.

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped]

import bot.app  # noqa: F401  (the footprint of everything `crieur run` imports)
from bench.catalogue import REGIONS, config_data, load, region_slug
from bench.farm import Farm, feed_url
from bench.measure import median, progress
from bench.poll import CHANGED, CrieurPoller
from bot.catalogue import Catalogue

CHILD_TIMEOUT = 900.0
CYCLES = 2  # full poll cycles per measuring process
MB = 1_000_000


def room_id(number: int) -> str:
    """The id of room `number` (the rooms exist only in the store: nothing is sent)."""
    return f"!bench-room-{number}:localhost"


async def _cycles(
    database: Path, port: int, feeds: int, rooms: int, changed: int, start: int
) -> dict[str, object]:
    urls = [feed_url(port, index) for index in range(feeds)]
    regions = min(REGIONS, feeds)
    by_region: dict[str, list[str]] = {}
    for number in range(rooms):
        by_region.setdefault(region_slug(number % regions), []).append(room_id(number))
    config = load(config_data(database, urls, rooms=by_region), database.parent)
    catalogue = Catalogue.from_config(config)  # held for the whole run, as `crieur run` does
    farm = Farm.attach(port, feeds)
    try:
        async with CrieurPoller(config) as crieur:
            follows = {room: [region] for region, ids in by_region.items() for room in ids}
            await crieur.store.sync_config_follows(follows, now=time.time())
            outcomes: Counter[str] = Counter()
            for cycle in range(CYCLES):
                first = start + cycle * changed
                await farm.publish([(first + i) % feeds for i in range(changed)])
                outcomes.update((await crieur.cycle()).outcomes)
            return {
                "outcomes": dict(outcomes),
                "outbox": await crieur.store.outbox_size(),
                "organisations": len(catalogue.organisations),
                "rooms": len(await crieur.store.followed_rooms()),
            }
    finally:
        await farm.stop()


def peak_rss() -> int:
    """This process's RSS high-water mark, in bytes."""
    # Not getrusage's ru_maxrss: Linux carries it over exec from the forked copy of the
    # parent, so a child started by a large bench would report the bench's RSS. VmHWM is the
    # high-water mark of this process's own address space.
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def child() -> None:
    """Measure in this process: imports, then a poll cycle; print RSS figures as JSON."""
    baseline = int(psutil.Process().memory_info().rss)
    parser = argparse.ArgumentParser(prog="python -m bench.memory")
    parser.add_argument("--database", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--feeds", type=int, required=True)
    parser.add_argument("--rooms", type=int, required=True)
    parser.add_argument("--changed", type=int, required=True)
    parser.add_argument("--start", type=int, required=True)
    args = parser.parse_args()
    details = asyncio.run(
        _cycles(args.database, args.port, args.feeds, args.rooms, args.changed, args.start)
    )
    peak = peak_rss()
    print(json.dumps({"baseline": baseline, "peak": peak, **details}), flush=True)


@dataclass(frozen=True, slots=True)
class MemoryResult:
    """Medians of the runs, in bytes."""

    feeds: int
    rooms: int
    baseline: float
    peak: float
    outbox: int


async def bench_memory(
    farm: Farm,
    database: Path,
    feeds: int,
    rooms: int,
    repeats: int,
    *,
    changed_share: float = CHANGED,
) -> MemoryResult:
    """Run the measuring process `repeats` times on the store the poll benchmark seeded."""
    assert farm.port is not None
    changed = max(round(feeds * changed_share), 1)
    baselines: list[float] = []
    peaks: list[float] = []
    outbox = 0
    for round_ in range(repeats):
        # Other feeds than the poll benchmark's, so each run has news to record and route.
        start = feeds // 2 + round_ * CYCLES * changed
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.memory",
            "--database",
            str(database),
            "--port",
            str(farm.port),
            "--feeds",
            str(feeds),
            "--rooms",
            str(rooms),
            "--changed",
            str(changed),
            "--start",
            str(start),
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(CHILD_TIMEOUT):
                stdout, _ = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        if process.returncode != 0:
            raise RuntimeError(f"the memory benchmark process failed (exit {process.returncode})")
        result = json.loads(stdout.decode().strip().splitlines()[-1])
        baselines.append(float(result["baseline"]))
        peaks.append(float(result["peak"]))
        outbox = int(result["outbox"])
        progress(
            f"memory {feeds} feeds, {result['rooms']} rooms: peak {result['peak'] / MB:.1f} MB, "
            f"after imports {result['baseline'] / MB:.1f} MB, {outbox} messages queued"
        )
    return MemoryResult(feeds, rooms, median(baselines), median(peaks), outbox)


if __name__ == "__main__":
    child()
