"""Print the lowest versions pyproject.toml declares, pinned, one requirement a line.

`make test` installs them in a second virtual environment and runs the unit tests there, so
that a floor the code has outgrown fails CI instead of an operator's install.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

# The extras the unit tests need besides the dependencies; the tools (linters, Synapse, the
# type checker) are left out: the floors concern what runs, not what checks.
EXTRAS = ("e2e",)
TEST_RUNNERS = ("pytest", "pytest-asyncio", "pytest-timeout")

_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*(.*)")


def pinned(requirement: str) -> str:
    """Turn `name[extra]>=X,<Y` into `name[extra]==X`; refuse a requirement without a floor."""
    match = _REQUIREMENT.fullmatch(requirement)
    if match is None:
        raise SystemExit(f"cannot read requirement {requirement!r}")
    name, extras, specifiers = match.groups()
    floors = [spec[2:].strip() for spec in specifiers.split(",") if spec.strip().startswith(">=")]
    if len(floors) != 1:
        raise SystemExit(f"{requirement!r}: declare exactly one floor (>=)")
    return f"{name}{extras or ''}=={floors[0]}"


def floors(pyproject: Path) -> list[str]:
    """The pinned floors of the dependencies, the e2e extra and the test runners."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    optional = project["optional-dependencies"]
    wanted = list(project["dependencies"])
    for extra in EXTRAS:
        wanted.extend(optional[extra])
    wanted.extend(r for r in optional["test"] if _name(r) in TEST_RUNNERS)
    return [pinned(requirement) for requirement in wanted]


def _name(requirement: str) -> str:
    """The distribution name a requirement starts with."""
    match = _REQUIREMENT.fullmatch(requirement)
    return match.group(1) if match else ""


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml")
    print("\n".join(floors(path)))
