"""Chat commands: a registry of declared commands, the guard around them, and their handlers.

Each command is declared once in `build_registry()` (name, aliases, usage, whether it changes
the room's state); `!help` is generated from those declarations. `Commands` runs every handler
behind the same guard.
"""

from __future__ import annotations

from ..errors import CommandError
from .builtin import build_registry
from .context import MAX_ARGUMENT, Context, FeedFinder, Reply, RoomSourcesPolicy, RoomView
from .guard import BURST, MAX_BODY, RATE, Commands, RateLimiter
from .names import resolve_names
from .registry import Arguments, CommandSpec, Handler, Registry, Token, tokenise

__all__ = [
    "BURST",
    "MAX_ARGUMENT",
    "MAX_BODY",
    "RATE",
    "Arguments",
    "CommandError",
    "CommandSpec",
    "Commands",
    "Context",
    "FeedFinder",
    "Handler",
    "RateLimiter",
    "Registry",
    "Reply",
    "RoomSourcesPolicy",
    "RoomView",
    "Token",
    "build_registry",
    "resolve_names",
    "tokenise",
]
