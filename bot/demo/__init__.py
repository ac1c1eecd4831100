"""`crieur demo`: a throwaway Synapse, sample feeds and the real bot, all on 127.0.0.1.

- `homeserver` starts and stops Synapse in its own process group and registers users;
- `feeds` serves the bundled sample feeds, where a new item appears every few seconds;
- `echo` prints what lands in the rooms, through a client logged in as the demo's human;
- `runner` wires them to `bot.app.run_bot` and stops everything on a signal or a deadline.
"""

from __future__ import annotations

from ..errors import CrieurError


class DemoError(CrieurError):
    """The demo cannot start or go on; the message says what to do."""
