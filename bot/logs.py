"""Logging set-up: text or JSON lines, with secrets redacted before anything is written."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

from .redact import mask_urls

LogFormat = Literal["text", "json"]
REDACTED = "***"


class RedactSecrets(logging.Filter):
    """Replace every known secret, and the secrets of every URL, in a record by `***`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        """Register more values that must never be written."""
        for secret in secrets:
            # Very short values would redact ordinary words; they are not real secrets anyway.
            if secret and len(secret) >= 4 and secret not in self._secrets:
                self._secrets.append(secret)
        self._secrets.sort(key=len, reverse=True)

    def redact(self, text: str) -> str:
        """Return `text` with every secret replaced and every URL masked."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return mask_urls(text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        redacted = self.redact(message)
        exc_text = self.redact(record.exc_text) if record.exc_text else record.exc_text
        if redacted != message or exc_text != record.exc_text:
            record.msg, record.args, record.exc_text = redacted, None, exc_text
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and exception)."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info or record.exc_text:
            payload["exception"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(payload, ensure_ascii=False)


def setup_logging(level: str = "info", fmt: LogFormat = "text") -> RedactSecrets:
    """Configure the root logger on stderr and return its secret filter."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    redactor = RedactSecrets()
    handler.addFilter(redactor)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party debug output would drown ours, and some of it echoes secrets: nio logs
    # login responses, aiosqlite logs query parameters (the stored access token among them).
    for noisy in ("aiohttp.access", "aiosqlite", "nio", "peewee"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return redactor
