"""The demo's accounts and rooms: one room per region, created by the bot, with the human in it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    LoginResponse,
    RoomCreateResponse,
    RoomResolveAliasResponse,
)

from ..config import Region
from . import DemoError
from .homeserver import SERVER_NAME, Homeserver, write_private

BOT_LOCALPART = "crieur"
HUMAN_LOCALPART = "you"
# Fixed device ids: a rerun logs in to the same device instead of piling up new ones.
SETUP_DEVICE = "CRIEURDEMOSETUP"
ECHO_DEVICE = "CRIEURDEMOECHO"
_PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # nothing to misread when typing it


@dataclass(frozen=True, slots=True)
class Accounts:
    """The two demo users and their passwords (the same on every run with a data dir)."""

    bot_user_id: str
    bot_password: str
    user_id: str
    password: str


def make_password() -> str:
    """A random password that is easy to type: `k7mp-2vqx-9hzt-c4wd`."""
    return "-".join("".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(4)) for _ in range(4))


def load_passwords(path: Path) -> dict[str, str]:
    """Read the passwords of earlier runs, adding any that are missing (file mode 600)."""
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        stored = {}
    if not isinstance(stored, dict):
        stored = {}
    passwords = {
        name: str(stored.get(name) or make_password()) for name in (BOT_LOCALPART, HUMAN_LOCALPART)
    }
    if passwords != stored:
        write_private(path, json.dumps(passwords, indent=2) + "\n")
    return passwords


async def ensure_accounts(homeserver: Homeserver, passwords_path: Path) -> Accounts:
    """Register the bot and the human unless they exist; return their credentials."""
    passwords = load_passwords(passwords_path)
    await asyncio.gather(
        *(homeserver.register(name, password) for name, password in passwords.items())
    )
    return Accounts(
        bot_user_id=homeserver.user_id(BOT_LOCALPART),
        bot_password=passwords[BOT_LOCALPART],
        user_id=homeserver.user_id(HUMAN_LOCALPART),
        password=passwords[HUMAN_LOCALPART],
    )


def client(homeserver_url: str, user_id: str, device_id: str) -> AsyncClient:
    """A nio client without encryption or stored state; the caller logs in and closes it."""
    config = AsyncClientConfig(store_sync_tokens=False, encryption_enabled=False)
    return AsyncClient(homeserver_url, user_id, device_id=device_id, config=config)


async def login(client: AsyncClient, password: str, device_name: str) -> None:
    """Log in with a password; raise DemoError if refused."""
    response = await client.login(password, device_name=device_name)
    if not isinstance(response, LoginResponse):
        raise DemoError(
            f"cannot log in as {client.user_id}: {response.message} (the data directory may be "
            f"damaged: start over with --fresh)"
        )


def room_alias(region: Region) -> str:
    """The alias of a region's room: `#ile-de-france:localhost`."""
    return f"#{region.slug}:{SERVER_NAME}"


async def ensure_rooms(
    bot: AsyncClient, human: AsyncClient, regions: Sequence[Region]
) -> dict[str, str]:
    """Create (or find again) each region's room, with the human in it; return slug → room id."""
    with _expected_errors():
        # One at a time: the id of a version 12 room is the hash of its create event, so rooms
        # created by one user in the same millisecond collide (Synapse retries, and logs errors).
        room_ids = {region.slug: await _room(bot, human, region) for region in regions}
        await asyncio.gather(*(_join(bot, human, room_id) for room_id in room_ids.values()))
    return room_ids


class _DropValidationWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Error validating response")


@contextlib.contextmanager
def _expected_errors() -> Iterator[None]:
    """Hide nio's warning about each error response (an alias in use is expected on reruns)."""
    logger = logging.getLogger("nio.responses")
    quiet = _DropValidationWarnings()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


async def _room(bot: AsyncClient, human: AsyncClient, region: Region) -> str:
    """Create the region's room, or return the one an earlier run made."""
    alias = room_alias(region)
    created = await bot.room_create(
        alias=region.slug,
        name=region.name,
        topic=f"Actualités des organisations — {region.name} (démo de Crieur)",
        invite=[human.user_id],
        # Room version 12: the creator (the bot) outranks everyone and must not be listed.
        power_level_override={"users": {human.user_id: 100}},
    )
    if isinstance(created, RoomCreateResponse):
        return str(created.room_id)
    if created.status_code != "M_ROOM_IN_USE":  # Synapse checks the alias before creating
        raise DemoError(f"cannot create the room {alias}: {created.message}")
    resolved = await bot.room_resolve_alias(alias)
    if not isinstance(resolved, RoomResolveAliasResponse):
        raise DemoError(f"cannot find the room {alias}: {resolved.message}")
    room_id = str(resolved.room_id)
    await bot.join(room_id)  # a no-op unless someone removed the bot meanwhile
    return room_id


async def _join(bot: AsyncClient, human: AsyncClient, room_id: str) -> None:
    """Make the human a member of the room (again, if they left it in an earlier run)."""
    joined = await human.join(room_id)
    if not isinstance(joined, JoinResponse):
        await bot.room_invite(room_id, human.user_id)
        joined = await human.join(room_id)
        if not isinstance(joined, JoinResponse):
            raise DemoError(f"{human.user_id} cannot join {room_id}: {joined.message}")
