"""What was changed in Crieur after profiling the poll cycle, with the figures before and after."""

# These figures come from targeted runs made while the changes were written (cProfile of the
# poll cycle, then `python -m bench --only poll` and smaller harnesses), on the same kind of
# 2-core machine, shared and so noisy; they are not remeasured by each run of the bench.

from __future__ import annotations

CHANGES: tuple[str, ...] = (
    "Profiled with cProfile (process CPU as the timer) on quiet and mixed 2,000-feed cycles, "
    "then measured with `python -m bench --only poll` (3 repeats, medians) before and after, "
    "on the farm described above. The zero-latency poll ratio still misses its target; the "
    "reason is under Method: with 20-entry feeds, parsing the 5% changed feeds costs about "
    "0.6 ms of CPU per feed of the cycle, five times what the bare loop spends on everything, "
    "and Crieur's parser is feedparser plus about 5% (11.3 ms against 10.8 ms per 21 kB feed), "
    "so no change in Crieur's own code can bring that ratio near 1.3.",
    "",
    "| figure (`--only poll`, medians of 3) | before | after |",
    "|---|---:|---:|",
    "| CPU per unchanged feed, 1,000 feeds | 0.277 ms (2.34× bare) | 0.212 ms (1.82× bare) |",
    "| CPU per unchanged feed, 5,000 feeds | 0.287 ms (2.41× bare) | 0.215 ms (1.61× bare) |",
    "| poll cycle CPU, 1,000 feeds, 5% changed | 0.95 s | 0.92 s |",
    "| poll cycle CPU, 5,000 feeds, 5% changed | 5.51 s | 4.64 s |",
    "| poll cycle wall, 1,000 feeds, 5% changed | 1.33 s (5.71×) | 1.25 s (6.01×, bare faster "
    "that run) |",
    "| linearity, CPU per feed at 5,000 against 1,000 | 1.17× | 1.00× |",
    "| poll cycle wall with 50 ms simulated network delay, 1,000 feeds | 3.91 s (1.18×) | "
    "3.64 s (1.10×) |",
    "| `Store.record_poll`, 1 new entry routed to 25 rooms (200 polls) | 2.0 ms CPU | "
    "0.7–0.8 ms CPU |",
    "",
    "- **Fetcher** (`bot/fetcher.py`). Each feed's URL is parsed and checked once, not at "
    "every poll; aiohttp's own per-request total timeout is gone, since the fetch's deadline "
    "(`asyncio.timeout_at`, counted from the moment the request gets a slot) already bounds "
    "every request and body read, and aiohttp's timer cost one more timer handle per poll; "
    "the debug line is only formatted when debug logging is on; the per-host and global slots "
    "are taken without an extra async context manager; the result is built once instead of "
    "being copied twice with `dataclasses.replace`; the too-large message is only written for "
    "a body that is too large. `Fetcher.fetch` alone, 16 workers over 2,000 feeds (half 304, "
    "half a 21 kB body): 0.172 → 0.118 ms CPU per feed, the bare loop's being 0.11–0.13 ms.",
    "- **Scheduler** (`bot/scheduler.py`). Up to twice `polling.concurrency` polls are in "
    "progress at once, while the fetcher still keeps HTTP requests to `polling.concurrency`: "
    "a poll that is parsing or waiting for its row to be committed no longer leaves a fetch "
    "slot idle, and twice as many unchanged polls share each SQLite commit. With "
    "`Store.record_not_modified` replaced by a no-op, the store's share of a quiet cycle was "
    "0.06 ms per feed before (0.227 against 0.168 ms) and 0.03 ms after (0.203 against "
    "0.174). A task is created for a due feed only once a slot is free, rather than one "
    "waiting task per due feed (5,000 after a restart): no measurable CPU change (0.20–0.22 "
    "ms per unchanged feed either way), fewer live objects. A feed's place in the interval "
    "(a SHA-256 of its URL) is computed once per feed, not at each poll.",
    "- **Store** (`bot/store.py`). A poll's outbox rows are written with one statement per "
    "kind (entries, digest) for all the rooms that follow the feed, instead of one round trip "
    "to SQLite's thread per room and entry: see the last row of the table; with 500 rooms "
    "following 20 regions, each new entry goes to 25 rooms.",
    "- **Fixes to the bench itself.** The memory figure read `getrusage`'s `ru_maxrss`, "
    "which Linux carries over exec from the forked copy of the parent: the child reported the "
    "bench's own RSS (288.7 MB in the first full run of this version, the bench then holding "
    "the 5,000 feeds' snapshots; the earlier 114 MB was read the same way, and may be "
    "inflated too). It now reads "
    "the child's `VmHWM`: 85 MB for the same two cycles. The latency benchmark published its "
    "items right after each feed's first fetch, when the next poll can be up to 1.5 intervals "
    "away (see Method): a maximum of 39.2 s against a target of 32 s, the median being 16.0 s "
    "and what the bot adds after fetching 0.14 s (max 0.43 s); it now measures the steady "
    "state, from each feed's second poll on.",
    "- **Evaluated, not kept.** Yielding once before each batch of unchanged polls is "
    "written, so that more join it: 0.203 → 0.192 ms per unchanged feed, within the noise. "
    "Parser (`bot/parser.py`): its checks, sanitising and normalising add about 5% to "
    "feedparser's own time; the cost is feedparser's SAX callbacks and sanitiser, nothing to "
    "change in Crieur. Hashing: the SHA-256 of a 21 kB body costs about 25 µs, and is what "
    "spares a feed without validators a 11 ms parse. Pipeline (`bot/pipeline.py`) and "
    "logging: under 5% of the profile together, left as they are.",
)
