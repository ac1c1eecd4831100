"""The Matrix side: the only package that imports nio.

Everything nio hands back is read into small typed values at this boundary; the rest of Crieur
sees strings, `SendError`s, a command handler and a listener, both passed to `MatrixBot`, and
the `CommandView` each command is handed. The cross-signing modules (`cross_signing`,
`identity`, `identity_keys`, `trust`, `policies`) need the e2e extra and are imported only
when encryption is on.
"""

from __future__ import annotations

from .answers import MAX_QUEUED_PER_SENDER, Answers, reply_txn_id
from .client import MatrixBot
from .protocols import Answer, CommandHandler, MatrixListener, QuietListener
from .rooms import CREATOR_POWER, RoomStates
from .session import KEY_ACCESS_TOKEN, KEY_DEVICE_ID, KEY_SYNC_TOKEN, KEY_USER_ID
from .sync import TIMELINE_LIMIT
from .timeline import encryption_off_txn_id
from .view import CommandView

__all__ = [
    "CREATOR_POWER",
    "KEY_ACCESS_TOKEN",
    "KEY_DEVICE_ID",
    "KEY_SYNC_TOKEN",
    "KEY_USER_ID",
    "MAX_QUEUED_PER_SENDER",
    "TIMELINE_LIMIT",
    "Answer",
    "Answers",
    "CommandHandler",
    "CommandView",
    "MatrixBot",
    "MatrixListener",
    "QuietListener",
    "RoomStates",
    "encryption_off_txn_id",
    "reply_txn_id",
]
