"""Small measuring helpers: wall and CPU time of a block, medians, progress lines."""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(slots=True)
class Span:
    """Wall-clock and process CPU seconds of one measured block (CPU of every thread)."""

    wall: float = 0.0
    cpu: float = 0.0


@contextmanager
def measured() -> Iterator[Span]:
    """Measure the block's wall time and this process's CPU time; collect garbage first."""
    # Garbage left by the previous run must not be collected, and paid for, inside this one.
    gc.collect()
    span = Span()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield span
    finally:
        span.wall = time.perf_counter() - wall
        span.cpu = time.process_time() - cpu


def median(values: Sequence[float]) -> float:
    """The median of the values."""
    return float(statistics.median(values))


def progress(message: str) -> None:
    """Tell the person running the bench what is going on (stderr, so stdout stays the table)."""
    print(f"bench: {message}", file=sys.stderr, flush=True)
