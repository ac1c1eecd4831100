"""The report: one row per figure, the machine it ran on, how to run it again, as Markdown."""

from __future__ import annotations

import os
import platform
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata

PACKAGES = ("aiohttp", "aiosqlite", "feedparser", "matrix-nio", "matrix-synapse")


@dataclass(frozen=True, slots=True)
class Figure:
    """One row: what Crieur did, what the baseline did, their ratio, and the target."""

    name: str
    measured: str
    baseline: str
    ratio: float | None
    target: str
    passed: bool | None  # None: shown for context, no target of its own


@dataclass(frozen=True, slots=True)
class Machine:
    """Where and when the figures were measured."""

    cpu: str
    memory_gb: float
    cores: int
    usable_cores: int
    python: str
    system: str
    versions: dict[str, str]
    started: datetime
    seconds: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]

    @classmethod
    def describe(
        cls, started: datetime, seconds: float, load_before: tuple[float, float, float]
    ) -> Machine:
        """Describe this machine and interpreter now."""
        versions = {name: _version(name) for name in PACKAGES}
        versions["SQLite"] = sqlite3.sqlite_version
        return cls(
            cpu=_cpu_model(),
            memory_gb=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9,
            cores=os.cpu_count() or 1,
            usable_cores=len(os.sched_getaffinity(0)),
            python=f"{platform.python_implementation()} {platform.python_version()}",
            system=f"{platform.system()} {platform.machine()}",
            versions=versions,
            started=started,
            seconds=seconds,
            load_before=load_before,
            load_after=os.getloadavg(),
        )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _load(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{value:.2f}" for value in values)


def table(figures: Sequence[Figure]) -> str:
    """The figures as a Markdown table."""
    lines = [
        "| figure | measured | baseline | ratio | target | result |",
        "|---|---:|---:|---:|---|---|",
    ]
    for figure in figures:
        ratio = f"{figure.ratio:.2f}×" if figure.ratio is not None else "–"
        result = "—" if figure.passed is None else "pass" if figure.passed else "**FAIL**"
        lines.append(
            f"| {figure.name} | {figure.measured} | {figure.baseline} | {ratio} "
            f"| {figure.target} | {result} |"
        )
    return "\n".join(lines)


def render(
    figures: Sequence[Figure],
    machine: Machine,
    *,
    command: str,
    method: Sequence[str],
    changes: Sequence[str] = (),
) -> str:
    """The whole report."""
    versions = ", ".join(f"{name} {version}" for name, version in machine.versions.items())
    parts = [
        "# Benchmarks",
        "",
        f"Written by `{command}` on {machine.started:%Y-%m-%d %H:%M} UTC; do not edit by hand.",
        "Every figure is measured against a baseline in the same run, so that the ratio, not "
        "the absolute time, is what carries from one machine to another. Each is the median "
        "of the repeated runs.",
        "",
        table(figures),
        "",
        "Baselines: for the poll cycle, a bare aiohttp loop; for parsing, `feedparser.parse` "
        "with its defaults; for store growth, the same cycles before the million entries; for "
        "delivery, a bare nio loop; for memory, the same process right after its imports; for "
        "latency, the poll interval, then Synapse's own send-to-seen time. Memory is in MB "
        "(10⁶ bytes). A zero-latency poll ratio that misses its target is explained under "
        "Method.",
        "",
        "## Machine",
        "",
        f"- CPU: {machine.cpu}, {machine.cores} cores ({machine.usable_cores} usable by the "
        f"bench); memory: {machine.memory_gb:.0f} GB",
        f"- Python: {machine.python}, {machine.system}",
        f"- libraries: {versions}",
        f"- load average (1 / 5 / 15 min): {_load(machine.load_before)} before, "
        f"{_load(machine.load_after)} after",
        f"- date: {machine.started:%Y-%m-%d %H:%M} UTC; the run took {machine.seconds:.0f} s",
        "",
        "## Reproduce",
        "",
        "```sh",
        "make bench                          # the full run; writes this file",
        "BENCH_FULL=1 make bench             # adds a 10,000-feed poll cycle",
        ".venv/bin/python -m bench --quick   # a smoke run with small sizes; prints the table only",
        ".venv/bin/python -m bench --only poll,parse   # some parts only; prints the table only",
        ".venv/bin/python -m bench --changed 0.2       # another share of changed feeds",
        "```",
        "",
        "Both start a feed farm and a throwaway Synapse on 127.0.0.1 and stop them at the end. "
        "The machine should be otherwise idle: the figures are ratios, but a busy machine still "
        "widens their spread.",
        "",
        "## Method",
        "",
        *method,
        "",
    ]
    if changes:
        parts += ["## What profiling changed", "", *changes, ""]
    return "\n".join(parts)
