"""Commands declared once: name, aliases, usage, who may run them; help is derived from them.

A word that names no command is someone else's (rooms often hold other bots) unless it is a
near miss of a name or alias: at most one edit (insertion, deletion, substitution, or swap of
neighbours) from a name of up to 5 letters, two from a longer one, ignoring case and accents.

Arguments are words; a name between double quotes ("…"), guillemets (« … ») or curly quotes
(“…”) is one argument, which settles the rare case where words of two names would also form a
third.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from ..catalogue import normalise
from .context import Context, Reply
from .lines import Lines, escape

MAX_COMMAND_WORD: Final = 64  # characters of the command word looked at
SHORT_NAME: Final = 5  # letters up to which a name allows one edit; longer ones allow two

_TOKEN: Final = re.compile(r'"([^"]*)"?|«([^»]*)»?|“([^”]*)”?|(\S+)')


@dataclass(frozen=True, slots=True)
class Token:
    """One argument; `quoted` when it was written between quotes."""

    text: str
    quoted: bool = False


@dataclass(frozen=True, slots=True)
class Arguments:
    """The arguments of a command, as words and as the text they came from."""

    tokens: tuple[Token, ...]
    raw: str = ""  # the text after the command word, for commands with a grammar of their own

    @property
    def text(self) -> str:
        """Return the arguments joined by single spaces, quotes removed."""
        return " ".join(token.text for token in self.tokens)


def tokenise(text: str) -> tuple[Token, ...]:
    """Split arguments on whitespace; text between "…", « … » or “…” is one argument.

    An opening quote without its closing one runs to the end of the text.
    """
    tokens: list[Token] = []
    for match in _TOKEN.finditer(text):
        bare = match.group(4)
        if bare is not None:
            tokens.append(Token(bare))
            continue
        inner = next(group for group in match.groups()[:3] if group is not None).strip()
        if inner:
            tokens.append(Token(inner, quoted=True))
    return tuple(tokens)


Handler = Callable[[Context, Arguments], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """A declared command: how it is called, what help says about it, who may run it."""

    name: str
    handler: Handler
    aliases: tuple[str, ...] = ()
    usage: str | None = None  # i18n key of the arguments, like `usage.subscribe`
    description: str = ""  # i18n key of the one-line description
    changes_state: bool = False  # moderators only
    admins_only: bool = False  # the admins of matrix.admins only
    min_args: int = 0
    reads_when_bare: bool = False  # without arguments it only shows: anyone may run it


class Registry:
    """Commands by name and alias, matched ignoring case and accents."""

    def __init__(self) -> None:
        self._specs: list[CommandSpec] = []
        self._index: dict[str, CommandSpec] = {}
        self._words: dict[str, str] = {}  # normalised name or alias → as declared

    def declare(
        self,
        name: str,
        handler: Handler,
        *,
        aliases: tuple[str, ...] = (),
        usage: str | None = None,
        changes_state: bool = False,
        admins_only: bool = False,
        min_args: int = 0,
        reads_when_bare: bool = False,
    ) -> None:
        """Declare `handler` as the command `name`; help lists commands in declaration order."""
        spec = CommandSpec(
            name=name,
            handler=handler,
            aliases=aliases,
            usage=usage,
            description=f"help.{name}",
            changes_state=changes_state,
            admins_only=admins_only,
            min_args=min_args,
            reads_when_bare=reads_when_bare,
        )
        keys = [normalise(word) for word in (name, *aliases)]
        for key in keys:
            if not key or key in self._index:
                raise ValueError(f"command name {key!r} of {name!r} is empty or taken")
        self._specs.append(spec)
        self._index.update(dict.fromkeys(keys, spec))
        self._words.update(zip(keys, (name, *aliases), strict=True))

    @property
    def specs(self) -> tuple[CommandSpec, ...]:
        """Every command, in the order help shows them."""
        return tuple(self._specs)

    def find(self, word: str) -> CommandSpec | None:
        """Return the command named or aliased `word`, ignoring case and accents."""
        return self._index.get(normalise(word[:MAX_COMMAND_WORD]))

    def near_misses(self, word: str, limit: int = 3) -> list[str]:
        """Return the names or aliases `word` is a near miss of, nearest first, one per command.

        Empty when `word` is no near miss: then it is no command of ours at all.
        """
        key = normalise(word[:MAX_COMMAND_WORD])
        scored: list[tuple[int, int, str, CommandSpec]] = []
        for order, (known, spec) in enumerate(self._index.items()):
            allowed = 1 if len(known) <= SHORT_NAME else 2
            distance = edit_distance(key, known, allowed)
            if distance <= allowed:
                scored.append((distance, order, self._words[known], spec))
        words: list[str] = []
        specs: list[CommandSpec] = []
        for _, _, known_word, spec in sorted(scored, key=lambda item: item[:2]):
            if spec not in specs:
                specs.append(spec)
                words.append(known_word)
        return words[:limit]

    async def help(self, ctx: Context, args: Arguments) -> Reply:
        """List every command, one line each, marking those for moderators."""
        out = Lines(ctx.language)
        out.add("help.header")
        for spec in self._specs:
            command = usage(ctx, spec)
            notes = [ctx.t(spec.description)]
            if spec.admins_only:
                notes.append(ctx.t("help.admins_only"))
            elif spec.changes_state and spec.reads_when_bare:
                notes.append(ctx.t("help.moderators_to_change"))
            elif spec.changes_state:
                notes.append(ctx.t("help.moderators_only"))
            if spec.aliases:
                aliases = ", ".join(ctx.command(alias) for alias in spec.aliases)
                notes.append(ctx.t("help.aliases", aliases=aliases))
            out.add(
                "help.line",
                command=command,
                description=" ".join(notes),
                markup={"command": f"<code>{escape(command)}</code>"},
            )
        out.add("help.footer", level=ctx.manage_power_level)
        return out.reply()


def edit_distance(typed: str, known: str, bound: int) -> int:
    """Return the optimal string alignment distance of two words, or `bound + 1` beyond it.

    Edits are insertions, deletions, substitutions and swaps of neighbours, each counting one;
    a letter moved by a swap is not edited again (optimal string alignment).
    """
    if abs(len(typed) - len(known)) > bound:
        return bound + 1
    previous: list[int] = []
    row = list(range(len(known) + 1))
    for i in range(1, len(typed) + 1):
        before, previous, row = previous, row, [i] + [0] * len(known)
        for j in range(1, len(known) + 1):
            cost = 0 if typed[i - 1] == known[j - 1] else 1
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and typed[i - 1] == known[j - 2] and typed[i - 2] == known[j - 1]:
                row[j] = min(row[j], before[j - 2] + 1)
        if min(row) > bound:  # every alignment already costs more
            return bound + 1
    return min(row[-1], bound + 1)


def usage(ctx: Context, spec: CommandSpec) -> str:
    """Return how a person types the command with its arguments (`!latest NAME [N]`)."""
    command = ctx.command(spec.name)
    return f"{command} {ctx.t(spec.usage)}" if spec.usage is not None else command
