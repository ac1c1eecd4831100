"""The feed a room asks for with `!subscribe URL`: its address checked, then discovery in time."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import Final
from urllib.parse import urlsplit

from .config import PollingConfig
from .discovery import Discovery, discover
from .fetcher import Fetcher, address_kind

log = logging.getLogger(__name__)

DEADLINE: Final = 30.0  # seconds a `!subscribe URL` may spend looking: a slow site gives up
RESOLVE_TIMEOUT: Final = 10.0


class SiteFinder:
    """Finds a site's feeds for a room, with a fetcher of its own and every fetch rule."""

    def __init__(self, polling: PollingConfig, *, deadline: float = DEADLINE) -> None:
        self._polling = polling
        self._deadline = deadline

    async def refused(self, url: str) -> str | None:
        """Return why the URL's host may not be fetched (a private address), else None.

        The fetcher checks the address it connects to anyway; asking first lets the answer
        say so plainly, before anything is fetched or stored.
        """
        if self._polling.allow_private_networks:
            return None
        parts = urlsplit(url)
        host = (parts.hostname or "").split("%", 1)[0]
        try:
            kind = address_kind(host)
        except ValueError:  # a name, not an address: look at what it resolves to
            return await self._refused_name(host, parts.port)
        return f"{host} ({kind})" if kind is not None else None

    async def _refused_name(self, host: str, port: int | None) -> str | None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT):
                infos = await loop.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError):
            return None  # discovery says why the site cannot be reached
        for info in infos:
            address = str(info[4][0]).split("%", 1)[0]
            try:
                kind = address_kind(ipaddress.ip_address(address))
            except ValueError:
                continue
            if kind is not None:
                return f"{host} → {address} ({kind})"
        return None

    async def find(self, url: str) -> Discovery:
        """Return what discovery finds at `url`; raise TimeoutError past the deadline."""
        async with Fetcher(self._polling) as fetcher, asyncio.timeout(self._deadline):
            return await discover(fetcher, url)
