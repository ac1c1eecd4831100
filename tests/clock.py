"""A clock the tests move by hand, for code that is given `clock=` instead of reading time."""

from __future__ import annotations


class Clock:
    """Return `now` when called; tests set or advance `now` themselves."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
