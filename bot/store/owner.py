"""One database, one bot: the process that sets a database's feeds holds a lock on it.

`crieur run` holds the lock for as long as it runs; `crieur fetch` holds it while it polls, or,
when a bot holds it, polls only if its configuration has the bot's feeds exactly, since
syncing another set would mark the bot's feeds inactive under it. The lock is an advisory
`flock` on a file beside the database (`crieur.sqlite3.lock`): the kernel releases it when
its process ends, however it ends, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

from ..errors import StoreError

MEMORY = ":memory:"


class DatabaseInUse(StoreError):
    """Another process owns the database's feed set."""


def lock_path(database: Path | str) -> Path:
    """Return the lock file of a database."""
    path = Path(database)
    return path.with_name(path.name + ".lock")


class DatabaseLock:
    """The advisory lock on a database; `acquire()` never waits."""

    def __init__(self, database: Path | str, command: str) -> None:
        self._database = str(database)
        self._command = command
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Tell whether this process holds the lock (an in-memory database is always held)."""
        return self._database == MEMORY or self._fd is not None

    def acquire(self) -> bool:
        """Take the lock if no other process has it; return whether it is held now."""
        if self.held:
            return True
        path = lock_path(self._database)
        writable = True
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:
            # flock needs no write access: a read-only database still gets its lock, and
            # opening the database then says clearly why it cannot be used.
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                raise StoreError(
                    f"{self._database} cannot be opened: cannot create its lock file {path} "
                    f"({error.strerror})"
                ) from error
            writable = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as error:
            os.close(fd)
            raise StoreError(f"{self._database} cannot be locked: {error.strerror}") from error
        if writable:  # who holds it, for the message another process shows
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {self._command}\n".encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        """Describe the process that holds the lock, as its lock file says."""
        with contextlib.suppress(OSError, UnicodeDecodeError):
            pid, _, command = lock_path(self._database).read_text("utf-8").strip().partition(" ")
            if pid.isdigit():
                return f"{command or 'crieur'} (pid {pid})"
        return "another Crieur process"

    def refusal(self, why: str) -> DatabaseInUse:
        """The error a process that may not use the database raises."""
        return DatabaseInUse(
            f"database: {self._database} belongs to {self.holder()}, {why} "
            "(one database belongs to one bot)"
        )

    def release(self) -> None:
        """Give the lock back."""
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> Self:
        if not self.acquire():
            raise self.refusal("which is running")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def same_feeds(configured: Iterable[tuple[str, str]], stored: Iterable[tuple[str, str]]) -> bool:
    """Tell whether syncing `configured` would leave the stored (organisation, URL) set as is."""
    return set(configured) == set(stored)
