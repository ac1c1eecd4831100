"""Files only the bot's user may read: the database, the crypto store."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Final

FILE_MODE: Final = 0o600
DIR_MODE: Final = 0o700
SQLITE_COMPANIONS: Final = ("-wal", "-shm", "-journal")


def private_file(path: Path) -> None:
    """Create `path` empty and 0600 if missing; take group and others' access from it if not.

    SQLite gives the -wal, -shm and -journal files it creates the mode of their database, so a
    database created here keeps every file private from its first byte.
    """
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    for file in (path, *(Path(f"{path}{suffix}") for suffix in SQLITE_COMPANIONS)):
        _tighten(file)


def private_dir(path: Path) -> None:
    """Create `path` 0700 if missing; take group and others' access from it and its files."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _tighten(path)
    for child in path.iterdir():
        _tighten(child)


def _tighten(path: Path) -> None:
    try:
        mode = stat.S_IMODE(path.lstat().st_mode)
    except FileNotFoundError:
        return
    # Only remove access: a read-only database must stay read-only (and fail as such).
    if mode & 0o077 and not path.is_symlink():
        # Someone else's file (a shared deployment's) is theirs to protect.
        with contextlib.suppress(PermissionError):
            os.chmod(path, mode & 0o700)
