"""`!trust reset @user`: trust a person's new cross-signing identity (admins only)."""

from __future__ import annotations

import re
from typing import Final

from ..catalogue import normalise
from ..errors import CommandError
from .context import Context, Reply
from .lines import shown
from .registry import Arguments

CROSS_SIGNED: Final = "cross-signed"
MAX_USER_ID: Final = 255  # the Matrix specification's limit
_USER_ID: Final = re.compile(r"@[^\s:]+:[^\s:]+(?::\d+)?")


def short_key(key: str) -> str:
    """A public key shortened as people compare them: its first three groups of four."""
    return " ".join(key[start : start + 4] for start in range(0, 12, 4)) + "…"


async def trust_command(ctx: Context, args: Arguments) -> Reply:
    """Forget the identity pinned for a user: their current one is trusted from now on."""
    words = [token.text for token in args.tokens]
    if len(words) != 2 or normalise(words[0]) != "reset":
        raise CommandError("trust.usage", command=ctx.command("trust"))
    user_id = words[1]
    if len(user_id) > MAX_USER_ID or not _USER_ID.fullmatch(user_id):
        raise CommandError("trust.bad_user", user=shown(user_id))
    policy = ctx.view.trust_policy()
    if policy != CROSS_SIGNED:
        raise CommandError("trust.not_cross_signed", policy=policy or "—")
    old = await ctx.view.reset_trust(user_id)
    if old is None:
        return Reply(ctx.t("trust.reset_none", user=user_id))
    return Reply(ctx.t("trust.reset_done", user=user_id, master_key=short_key(old)))
