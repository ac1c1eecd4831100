"""The reliability table: one row per scenario, as Markdown."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Row:
    """What one scenario did and what went wrong, counted."""

    scenario: str
    runs: int
    expected: int  # entries (or commands, checks…) that should have arrived exactly once
    lost: int
    duplicated: int
    crashes: int
    note: str = ""

    @property
    def passed(self) -> bool:
        """Nothing lost, nothing duplicated, nothing crashed."""
        return self.lost == 0 and self.duplicated == 0 and self.crashes == 0


def table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| scenario | runs | expected | lost | duplicated | crashes | result | notes |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        result = "pass" if row.passed else "**FAIL**"
        lines.append(
            f"| {row.scenario} | {row.runs:,} | {row.expected:,} | {row.lost:,} "
            f"| {row.duplicated:,} | {row.crashes:,} | {result} | {row.note} |"
        )
    return "\n".join(lines)


def render(
    rows: Sequence[Row],
    *,
    started: datetime,
    seconds: float,
    command: str,
    method: Sequence[str] = (),
) -> str:
    """The whole report; `method` holds one paragraph per scenario on how it is run."""
    how = ["## Method", "", *(f"- {paragraph}" for paragraph in method), ""] if method else []
    return "\n".join(
        [
            "# Reliability",
            "",
            f"Written by `{command}` on {started:%Y-%m-%d %H:%M} UTC in {seconds:.0f} s; "
            "do not edit by hand.",
            "Each scenario drives Crieur as its users do (the `crieur` command, its "
            "configuration, a real Synapse on 127.0.0.1, real nio clients, feeds from a local "
            "HTTP server) and counts, from what the rooms really received, what was lost, "
            "what arrived twice and how often the bot crashed.",
            "",
            table(rows),
            "",
            *how,
            "## Reproduce",
            "",
            "```sh",
            "make reliability                          # the full counts; writes this file",
            ".venv/bin/python -m reliability --quick   # the short versions; prints the table",
            "```",
            "",
            "The short versions also run in `make test` (`tests/test_reliability_*.py`).",
            "",
        ]
    )
