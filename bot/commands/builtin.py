"""The commands Crieur answers, declared once, in the order `!help` lists them."""

from __future__ import annotations

from .catalogue import latest_command, orgs_command, regions_command
from .events import events_command
from .filters import filter_command
from .registry import Handler, Registry
from .status import status_command
from .subscriptions import subscribe_command, subscriptions_command, unsubscribe_command
from .trust import trust_command


def build_registry() -> Registry:
    """Return a registry holding every command."""
    registry = Registry()
    registry.declare("help", registry.help, aliases=("aide",))
    registry.declare(
        "orgs", orgs_command, aliases=("organisations", "organizations"), usage="usage.orgs"
    )
    registry.declare("regions", regions_command)
    _for_moderators(registry, "subscribe", subscribe_command, ("sub", "abonner"))
    _for_moderators(registry, "unsubscribe", unsubscribe_command, ("unsub", "desabonner"))
    registry.declare("subscriptions", subscriptions_command, aliases=("subs", "abonnements"))
    registry.declare(
        "latest", latest_command, aliases=("derniers",), usage="usage.latest", min_args=1
    )
    registry.declare(
        "filter",
        filter_command,
        aliases=("filtre",),
        usage="usage.filter",
        changes_state=True,
        reads_when_bare=True,
    )
    registry.declare(
        "events", events_command, aliases=("agenda", "evenements"), usage="usage.events"
    )
    registry.declare("status", status_command, aliases=("etat",))
    registry.declare(
        "trust", trust_command, aliases=("confiance",), usage="usage.trust", admins_only=True
    )
    return registry


def _for_moderators(
    registry: Registry, name: str, handler: Handler, aliases: tuple[str, ...]
) -> None:
    """Declare a command that changes what the room receives: it takes at least one name."""
    registry.declare(
        name, handler, aliases=aliases, usage=f"usage.{name}", changes_state=True, min_args=1
    )
