"""nio's crypto store, its database file created private (0600) before SQLite writes to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..files import private_file


def private_store_class() -> type[Any]:
    """nio's default store, creating its file 0600 (imported late: it needs the e2e extra)."""
    from nio.store import DefaultStore

    class PrivateStore(DefaultStore):  # type: ignore[misc]
        """DefaultStore whose SQLite file is created 0600, its journal following."""

        def _create_database(self) -> Any:
            private_file(Path(self.database_path))
            return super()._create_database()

    return PrivateStore
