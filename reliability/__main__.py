"""`python -m reliability [--quick]`: run every scenario, print the table, write the report."""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from reliability import (
    abuse,
    bad_input,
    crash,
    hostile_content,
    hostile_feeds,
    outage,
    slow_host,
)
from reliability.report import Row, render, table

REPORT = Path(__file__).resolve().parent.parent / "docs" / "RELIABILITY.md"

# Each scenario: (full, workdir) -> rows. `full` selects the counts, else short ones.
Scenario = Callable[[bool, Path], Awaitable[list[Row]]]


def scenarios() -> list[Scenario]:
    """Every scenario, in the order of the report."""
    return [
        crash.scenario,  # 1. crash safety
        outage.scenario,  # 2. homeserver outage
        hostile_feeds.scenario,  # 3. hostile feeds
        hostile_content.scenario,  # 4. hostile content
        abuse.scenario,  # 5. abuse from chat
        bad_input.scenario,  # 6. bad configuration and database
        slow_host.scenario,  # 7. a slow host beside a fast one
    ]


def methods() -> list[str]:
    """How each scenario is run, one paragraph each, for the report."""
    described = (hostile_feeds, hostile_content, abuse, bad_input, slow_host)
    return [crash.METHOD, outage.METHOD, *(_from_docstring(module) for module in described)]


def _from_docstring(module: ModuleType) -> str:
    """A scenario module's docstring ("Scenario N, name: …") as one paragraph."""
    title, _, rest = " ".join((module.__doc__ or "").split()).partition(": ")
    number, _, name = title.partition(", ")
    return f"**{name}** ({number.lower()}): {rest}"


async def run_all(full: bool, workdir: Path) -> list[Row]:
    """Run the scenarios in turn, each in a directory of its own."""
    rows: list[Row] = []
    for index, scenario in enumerate(scenarios()):
        directory = workdir / str(index)
        directory.mkdir()
        rows.extend(await scenario(full, directory))
    return rows


def main() -> None:
    """Parse arguments, run, print the table, write the report."""
    parser = argparse.ArgumentParser(prog="python -m reliability", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the short versions; no report")
    parser.add_argument("--output", type=Path, help="default: docs/RELIABILITY.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started, began = datetime.now(UTC), time.monotonic()
    with tempfile.TemporaryDirectory(prefix="crieur-reliability-") as workdir:
        rows = asyncio.run(run_all(not args.quick, Path(workdir)))
    print(table(rows))
    output: Path | None = args.output or (None if args.quick else REPORT)
    if output is not None:
        text = render(
            rows,
            started=started,
            seconds=time.monotonic() - began,
            command="make reliability",
            method=methods(),
        )
        output.write_text(text, encoding="utf-8")
    if not all(row.passed for row in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
