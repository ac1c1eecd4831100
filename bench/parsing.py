"""Parsing: Crieur's parser against `feedparser.parse(body)` with its default options."""

# Both parse the same bodies, those of the feeds the poll cycles found changed: Crieur's parser
# adds its checks (a scan of the DTD), sanitising and resolving options, and the normalising of
# each entry; the baseline is feedparser alone, as most feed readers call it.

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import feedparser

from bench.farm import Farm
from bench.measure import median, progress
from bot.parser import parse


@dataclass(frozen=True, slots=True)
class ParseResult:
    """Per-round CPU seconds of each side over the same bodies."""

    feeds: int
    entries: int  # entries in all the bodies (the same for both sides)
    body_bytes: float  # mean size of a body
    crieur: list[float]
    bare: list[float]

    @property
    def crieur_per_feed(self) -> float:
        return median(self.crieur) / self.feeds

    @property
    def bare_per_feed(self) -> float:
        return median(self.bare) / self.feeds

    @property
    def crieur_entries_per_second(self) -> float:
        return self.entries / median(self.crieur)

    @property
    def bare_entries_per_second(self) -> float:
        return self.entries / median(self.bare)


def _time_crieur(bodies: Sequence[tuple[str, bytes]]) -> tuple[float, int]:
    started = time.process_time()
    entries = sum(len(parse(body, feed_url=url)) for url, body in bodies)
    return time.process_time() - started, entries


def _time_feedparser(bodies: Sequence[tuple[str, bytes]]) -> tuple[float, int]:
    started = time.process_time()
    entries = sum(len(feedparser.parse(body).entries) for _, body in bodies)
    return time.process_time() - started, entries


async def bench_parsing(farm: Farm, indexes: Sequence[int], repeats: int) -> ParseResult:
    """Parse the current bodies of these feeds `repeats` times each way."""
    bodies = [(farm.url(index), await farm.body(index)) for index in indexes]
    crieur: list[float] = []
    bare: list[float] = []
    entries = 0
    for round_ in range(repeats):
        for who in ("crieur", "bare") if round_ % 2 == 0 else ("bare", "crieur"):
            timer = _time_crieur if who == "crieur" else _time_feedparser
            seconds, count = await asyncio.to_thread(timer, bodies)
            if entries and count != entries:
                raise RuntimeError(f"{who} found {count} entries, the other side {entries}")
            entries = count
            (crieur if who == "crieur" else bare).append(seconds)
            progress(
                f"parse {len(bodies)} feeds: {who:6} {seconds * 1000 / len(bodies):.2f} ms per "
                f"feed, {count / seconds:,.0f} entries/s"
            )
    size = sum(len(body) for _, body in bodies) / len(bodies)
    return ParseResult(len(bodies), entries, size, crieur, bare)
